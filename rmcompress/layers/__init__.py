"""Every custom Keras layer of the project, registered with Keras serialisation on import:
the encoder layers (:mod:`.encoder`), the hard-concrete gate layers (:mod:`.gates`) and the layers
compression passes put into a model (:mod:`.compressed`)."""
