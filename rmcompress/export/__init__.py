"""Export: a model directory -> SavedModel and TFLite files, each checked against the float model."""
