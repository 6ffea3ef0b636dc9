"""The one module that imports TensorFlow and tf_keras (Keras 2 API).

Every other module does ``from rmcompress._keras import tf, keras``. tensorflow-model-optimization
only works with tf_keras, so the models the suite trains and compresses are tf_keras models; Keras 3
appears only where keras-nlp tokenizers and backbones are read (``rmcompress.data.tokenizer`` and
``rmcompress.models.backbones``) and where a user's Keras 3 model is converted
(``rmcompress.models.convert``); those modules get the Keras 3 module from :func:`keras3`. We import
``tf_keras`` directly, so nothing depends on the ``TF_USE_LEGACY_KERAS`` environment variable.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras
# The layer tf_keras wraps a TensorFlow op in when it is applied to a Keras tensor (``x + y``,
# ``tf.nn.relu(x)``); not exported by tf_keras, and users' models are full of it.
from tf_keras.src.layers.core.tf_op_layer import SlicingOpLambda, TFOpLambda



def keras3():
    """The Keras 3 module (``import keras``), imported on first use: most commands never need it,
    and it costs a second or two to load."""
    import keras as keras_3

    return keras_3


__all__ = ["tf", "keras", "keras3", "TFOpLambda", "SlicingOpLambda"]
