"""Compare an exported artifact's rewards with the float Keras model's on the same token ids.

Measures (``reference`` = Keras float rewards, ``candidate`` = artifact rewards):
``parity_max_abs_diff`` = max |c - r|; ``parity_mean_abs_diff``; ``parity_decision_agreement`` =
mean(1[c > 0] == 1[r > 0]) (the pointwise decision); ``parity_spearman`` = rank correlation (what
a pairwise comparison depends on). Float exports must stay within ``FLOAT_TOLERANCE``; quantised
ones are checked on agreement and rank correlation (:data:`QUANT_THRESHOLDS`).
"""
from __future__ import annotations

import numpy as np

from rmcompress.errors import ExportError
from rmcompress.metrics import spearman

FLOAT_TOLERANCE = 1e-4
#: quantize mode -> (min decision agreement, min spearman); float16 gets a loose absolute bound too
QUANT_THRESHOLDS = {"float16": (0.98, 0.99), "dynamic": (0.95, 0.97), "int4": (0.90, 0.90), "int8": (0.90, 0.90),
                    "int16x8": (0.95, 0.97)}


def parity_metrics(reference, candidate, pairs: bool = False) -> dict:
    """``pairs``: the rows are chosen texts then their rejected texts (two equal halves); the decision
    compared is then the pair's order ``r_chosen > r_rejected`` (a pairwise reward's sign means nothing)."""
    r = np.asarray(reference, np.float64).reshape(-1)
    c = np.asarray(candidate, np.float64).reshape(-1)
    if r.shape != c.shape:
        raise ExportError(f"parity: {c.shape[0]} artifact outputs for {r.shape[0]} reference outputs")
    d = np.abs(c - r)
    if pairs and len(r) % 2 == 0 and len(r):
        n = len(r) // 2
        agree = float(np.mean(((c[:n] - c[n:]) > 0) == ((r[:n] - r[n:]) > 0)))
    else:
        agree = float(np.mean((c > 0) == (r > 0))) if len(d) else 1.0
    return {"parity_max_abs_diff": float(d.max()) if len(d) else 0.0,
            "parity_mean_abs_diff": float(d.mean()) if len(d) else 0.0,
            "parity_decision_agreement": agree,
            "parity_spearman": spearman(r, c), "parity_examples": int(len(d))}


def check_parity(metrics: dict, quantize: str, what: str = "export") -> None:
    """Raise :class:`ExportError` if ``metrics`` fail the bar for ``quantize``."""
    if quantize == "none":
        if metrics["parity_max_abs_diff"] > FLOAT_TOLERANCE:
            raise ExportError(f"{what}: float export differs from the Keras model by "
                              f"{metrics['parity_max_abs_diff']:.3g} > {FLOAT_TOLERANCE:g}")
        return
    agree_min, rho_min = QUANT_THRESHOLDS[quantize]
    agree, rho = metrics["parity_decision_agreement"], metrics["parity_spearman"]
    if agree < agree_min or (not np.isnan(rho) and rho < rho_min):
        raise ExportError(f"{what}: {quantize} export agrees with the float model on {agree:.3f} of "
                          f"decisions (min {agree_min}) with rank correlation {rho:.3f} (min {rho_min})")
