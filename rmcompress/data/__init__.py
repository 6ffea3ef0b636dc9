"""Data: read and validate reward-model files, split them, tokenise them, batch them with ``tf.data``.

Importing the package is cheap (no TensorFlow); each module loads what it needs.
"""
