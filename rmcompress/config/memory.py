"""A lower-bound estimate of the memory one training step needs, from the settings alone.

Float32 values (4 bytes). ``B`` texts per step (the batch; twice it for pairs), ``L`` tokens per
text, width ``d``, vocabulary ``V``:

- parameters ``P`` (token table ``V*d``, positions ``L*d``, then per transformer block
  ``4 d^2 + 2 d ffn``; per cnn branch ``k d filters``; the bow's ``d hidden``), held four times
  (weights, gradients, two AdamW moments): ``16 P`` bytes;
- activations kept for the backward pass, per text: transformer ``depth (3 heads L^2 + L (8 d +
  2 ffn)) + 2 L d`` (attention scores, softmax and dropout mask are ``heads x L x L`` each);
  cnn ``2 L d + 2 L sum(filters)``; bow ``2 L d``: ``4 B x that`` bytes.

It leaves out what TensorFlow adds on top, so a run it refuses could never fit; the limit is the
machine's physical memory (:func:`physical_memory`). A pretrained ``--backbone`` has sizes the
settings do not state: only ``L`` and ``B`` are known, so its estimate counts a width of 768 and
12 blocks of 12 heads (BERT-base).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

BYTES = 4
#: the backbone assumed when the settings do not give the sizes (BERT-base)
BACKBONE_SIZES = dict(width=768, depth=12, heads=12, ffn=3072)


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int  # bytes of weights, gradients and AdamW moments
    activations: int  # bytes kept for the backward pass of one step
    attention: int  # of which the attention score tensors

    @property
    def total(self) -> int:
        return self.parameters + self.activations

    def explain(self, texts: int, seq_len: int) -> str:
        """``about 12.5 GiB (attention scores 11.9 GiB, other activations ..., parameters ...)``."""
        parts = []
        if self.attention:
            parts.append(f"attention scores {human(self.attention)}")
        parts.append(f"other activations {human(self.activations - self.attention)}")
        parts.append(f"parameters with gradients and optimiser state {human(self.parameters)}")
        return f"about {human(self.total)} for {texts} texts of {seq_len} tokens ({', '.join(parts)})"


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (``None`` where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate(arch: str, texts: int, seq_len: int, vocab_size: int, width: int, depth: int = 0, heads: int = 0,
             ffn: int = 0, filters: int = 0, kernel_sizes=(), hidden: int = 0) -> MemoryEstimate:
    """The estimate of the module docstring for one step on ``texts`` texts."""
    L, d = int(seq_len), int(width)
    params = int(vocab_size) * d
    per_text = 2 * L * d
    attention = 0
    if arch in ("transformer", "bert"):
        params += L * d + depth * (4 * d * d + 2 * d * ffn)
        attention = depth * 3 * heads * L * L
        per_text += attention + depth * L * (8 * d + 2 * ffn)
    elif arch == "cnn":
        params += sum(int(k) * d * filters for k in kernel_sizes)
        per_text += 2 * L * filters * len(kernel_sizes)
    else:
        params += d * hidden
    return MemoryEstimate(parameters=4 * BYTES * params, activations=BYTES * texts * per_text,
                          attention=BYTES * texts * attention)
