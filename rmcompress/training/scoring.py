"""A scorer's quality on encoded data, with the keys ``report.json`` uses
(:func:`rmcompress.metrics.quality_metrics` of its rewards)."""
from __future__ import annotations

from rmcompress._keras import keras
from rmcompress.data.pipeline import EncodedData
from rmcompress.metrics import quality_metrics


def evaluate_encoded(model: keras.Model, data: EncodedData, task: str, loss: str = "bce",
                     batch_size: int = 256) -> dict:
    """Quality of a scorer on encoded data: the keys ``report.json`` uses."""
    if task == "pairwise":
        rc = model.predict(data.chosen, batch_size=batch_size, verbose=0).reshape(-1)
        rr = model.predict(data.rejected, batch_size=batch_size, verbose=0).reshape(-1)
        return quality_metrics(task, (rc, rr), None, loss)
    r = model.predict(data.ids, batch_size=batch_size, verbose=0).reshape(-1)
    return quality_metrics(task, r, data.labels, loss)


__all__ = ["evaluate_encoded"]
