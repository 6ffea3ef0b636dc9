"""``ArchConfig``: everything needed to rebuild a reward model's graph (weights are stored
separately), checked on construction; the graphs themselves are in
:mod:`rmcompress.models.architectures`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from rmcompress.config.choices import ARCHITECTURES, HEAD_HIDDEN_ARCHS
from rmcompress.errors import ModelError


@dataclass
class ArchConfig:
    """Everything needed to rebuild a model's graph (weights are stored separately)."""

    arch: str = "transformer"
    vocab_size: int = 8000
    seq_len: int = 64
    width: int = 64
    depth: int = 2
    heads: int | list = 4
    head_dim: int = 16
    ffn: int | list = 128
    activation: str = "relu"
    dropout: float = 0.1
    kernel_sizes: list = field(default_factory=lambda: [3, 4, 5])
    filters: int | list = 64
    hidden: int = 64                   # bow: hidden units after the pooling
    head_hidden: int = 0               # transformer/cnn: ReLU units between the pooling and the reward (0: none)
    norm_epsilon: float = 1e-6
    block_present: list | None = None  # transformer: False = block removed (skip connection only)
    input_vocab_size: int | None = None  # tokeniser vocabulary when rows were removed (TokenRemap)

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ModelError(f"architecture {self.arch!r} unknown; allowed: {', '.join(ARCHITECTURES)}")
        for name in ("vocab_size", "seq_len", "width"):
            if int(getattr(self, name)) < 1:
                raise ModelError(f"architecture setting {name}={getattr(self, name)} must be >= 1")
        if self.depth < 0:
            raise ModelError(f"architecture setting depth={self.depth} must be >= 0")
        if int(self.head_hidden) < 0:
            raise ModelError(f"architecture setting head_hidden={self.head_hidden} must be >= 0")
        if self.head_hidden and self.arch not in HEAD_HIDDEN_ARCHS:
            raise ModelError(f"architecture setting head_hidden={self.head_hidden} is for the transformer "
                             f"and the cnn; {self.arch} has no reward-head hidden layer (bow: hidden)")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ModelError(f"architecture setting dropout={self.dropout} must be in [0, 1)")
        self.kernel_sizes = [int(k) for k in self.kernel_sizes]
        if self.arch == "cnn":
            ks = self.kernel_sizes
            if not ks or min(ks) < 1 or len(set(ks)) != len(ks) or max(ks) > int(self.seq_len):
                raise ModelError(f"architecture setting kernel_sizes={ks} must be distinct widths between 1 and "
                                 f"the sequence length {self.seq_len} (one convolution branch per width)")

    def per_block(self, name: str) -> list[int]:
        """``heads``/``ffn`` as one int per block (an int setting is repeated ``depth`` times)."""
        v = getattr(self, name)
        vals = [int(x) for x in v] if isinstance(v, (list, tuple)) else [int(v)] * self.depth
        if len(vals) != self.depth:
            raise ModelError(f"architecture setting {name} has {len(vals)} entries for depth {self.depth}")
        return vals

    def per_conv(self) -> list[int]:
        v = self.filters
        vals = [int(x) for x in v] if isinstance(v, (list, tuple)) else [int(v)] * len(self.kernel_sizes)
        if len(vals) != len(self.kernel_sizes):
            raise ModelError(f"architecture setting filters has {len(vals)} entries for "
                             f"{len(self.kernel_sizes)} kernel sizes")
        return vals

    def blocks_present(self) -> list[bool]:
        return [True] * self.depth if self.block_present is None else [bool(b) for b in self.block_present]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ArchConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"unknown architecture settings {unknown}; allowed: {sorted(known)}")
        return cls(**d)


__all__ = ["ArchConfig"]
