"""Keras callbacks used by the trainer."""
from __future__ import annotations

from rmcompress._keras import keras


class BestWeightsEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping that *always* ends with the best epoch's weights.

    Keras' ``restore_best_weights`` only restores when stopping triggers; a run that uses all its
    epochs would keep the last epoch's weights. This restores the best ones at the end either way.
    """

    def __init__(self, **kwargs):
        kwargs["restore_best_weights"] = True
        super().__init__(**kwargs)

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self.best_weights is not None and self.stopped_epoch == 0:
            self.model.set_weights(self.best_weights)
