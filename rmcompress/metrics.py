"""Quality metrics from raw reward scores (numpy; the same for every artifact kind).

- pointwise, binary labels: ``accuracy`` = mean(1[r > 0] == y), plus ``auc`` (rank-based);
- pointwise, real labels: ``mae``, ``rmse``, ``spearman``;
- pairwise: ``pairwise_accuracy`` = mean(1[r_c > r_r]) and ``mean_margin`` = mean(r_c - r_r).
"""
from __future__ import annotations

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x))
    # average ties
    xs = x[order]
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        if j > i:
            ranks[order[i:j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def auc(scores, labels) -> float:
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0.5
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(scores) + 1
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def quality_metrics(task: str, scores, labels=None, loss: str = "bce") -> dict:
    """Metrics for ``scores`` (pointwise: ``[n]``; pairwise: ``(r_chosen, r_rejected)``)."""
    if task == "pairwise":
        rc, rr = (np.asarray(s, np.float64).reshape(-1) for s in scores)
        diff = rc - rr
        return {"pairwise_accuracy": float(np.mean(diff > 0)), "mean_margin": float(np.mean(diff))}
    r = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    if loss == "bce":
        return {"accuracy": float(np.mean((r > 0) == (y > 0.5))), "auc": auc(r, y)}
    err = r - y
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "spearman": spearman(r, y)}


def quality_key(task: str, loss: str = "bce") -> str:
    """The headline metric of a task: what tables sort and compare on."""
    if task == "pairwise":
        return "pairwise_accuracy"
    return "accuracy" if loss == "bce" else "mae"
