"""The export plan: what the passes decided about the exported file, in typed fields.

Passes set it (``quantise``: the precision and its calibration; ``length``: the sequence buckets);
the pipeline's export step reads only it. With no ``quantise`` pass the file is float32; with no
``length`` pass it has the model's fixed sequence length. No TensorFlow import here.
"""
from __future__ import annotations

from dataclasses import dataclass

from rmcompress.compression.settings import QuantiseSettings

#: quantisation modes that calibrate activation ranges on representative (training) rows
CALIBRATED_MODES = ("int8", "int16x8")


@dataclass(frozen=True)
class LengthPlan:
    """A dynamic sequence dimension: ``mode`` (``buckets``/``dynamic``), the bucket widths
    (``None`` in dynamic mode) and ``margin``, the padding a text needs after its last token."""

    mode: str
    buckets: list[int] | None
    margin: int

    @property
    def min_length(self) -> int:
        return self.margin + 1

    def as_dict(self) -> dict:
        """For ``metadata.json`` and the report."""
        return {"mode": self.mode, "buckets": self.buckets, "margin": self.margin, "min_length": self.min_length}


@dataclass(frozen=True)
class ExportPlan:
    """The exported file's precision and input shape (module docstring); passes replace it
    (``dataclasses.replace``), so a copied state never shares a plan that changes."""

    quantize: str = "none"
    calibration_samples: int = QuantiseSettings.calibration_samples
    keep_float_ops: list[str] | str | None = None
    max_layer_error: float | None = None
    min_layer_agreement: float | None = None
    debug_samples: int = QuantiseSettings.debug_samples
    embedding_bits: int = QuantiseSettings.embedding_bits
    length: LengthPlan | None = None

    @property
    def needs_calibration(self) -> bool:
        """Whether conversion needs representative (training) rows: activation ranges, or the rows
        ``int4``'s per-layer agreement check scores."""
        return self.quantize in CALIBRATED_MODES or (self.quantize == "int4" and self.min_layer_agreement is not None)
