"""Quality metrics from raw reward scores (numpy, scipy.stats; the same for every artifact kind).

- pointwise, binary labels: ``accuracy`` = mean(1[r > 0] == y), plus ``auc`` (Mann-Whitney U / (n_pos n_neg));
- pointwise, real labels: ``mae``, ``rmse``, ``spearman`` (rank correlation);
- pairwise: ``pairwise_accuracy`` = mean(1[r_c > r_r]) and ``mean_margin`` = mean(r_c - r_r).

The sampling error of an accuracy *drop* measured on the same rows (a compressed model against its
source) is the paired one: with ``d_i = c_src_i - c_i`` (``c`` = 1 when row ``i`` is right: the
indicator inside ``accuracy`` / ``pairwise_accuracy``, :func:`correct_rows`), the drop is
``100 * mean(d)`` points and its standard error ``100 * sd(d) / sqrt(n)`` (sample sd, ``ddof=1``;
:func:`paired_drop_se`). Only rows where the two models disagree on correctness contribute, so a
model that flips few rows has a small error even on a small split.

A rewrite that should not change a model (fusing ops, dropping closed branches, scoring at a
shorter length) is checked against the rewards ``r`` it started from with the bound
``tolerance * max(1, max |r|)`` (:func:`rounding_bound`): float32 rounding grows with the rewards'
magnitude (a distilled, pruned MiniLM moved by more than ``1e-5`` after an exact reordering of its
sums), and below a magnitude of 1 the bound is absolute.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def rounding_bound(reference, tolerance: float) -> float:
    """``tolerance * max(1, max |reference|)`` (module docstring)."""
    ref = np.abs(np.asarray(reference, np.float64))
    return float(tolerance) * max(1.0, float(ref.max()) if ref.size else 0.0)


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties share their average rank): ``scipy.stats.spearmanr``; NaN
    for fewer than two values or a constant input (no ranking to correlate)."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def auc(scores, labels) -> float:
    """ROC AUC = P(score of a positive > score of a negative) + P(tie) / 2, the Mann-Whitney U of
    the positives' scores divided by ``n_pos * n_neg`` (``scipy.stats.mannwhitneyu``); NaN when
    one class is absent."""
    scores, labels = np.asarray(scores, np.float64).reshape(-1), np.asarray(labels).reshape(-1) > 0.5
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


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


def correct_rows(task: str, scores, labels=None) -> np.ndarray:
    """Per row, 1.0 when it is right: ``r > 0 == (y > 0.5)`` (pointwise, binary labels) or
    ``r_c > r_r`` (pairwise); the mean is ``accuracy`` / ``pairwise_accuracy``."""
    if task == "pairwise":
        rc, rr = (np.asarray(s, np.float64).reshape(-1) for s in scores)
        return (rc > rr).astype(np.float64)
    r = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels, np.float64).reshape(-1)
    return ((r > 0) == (y > 0.5)).astype(np.float64)


def paired_drop_se(source_correct, model_correct) -> float:
    """Standard error in points of the drop ``100 * mean(source_correct - model_correct)`` over the
    same rows: ``100 * sd(d) / sqrt(n)`` (module docstring); 0 for fewer than two rows."""
    d = np.asarray(source_correct, np.float64).reshape(-1) - np.asarray(model_correct, np.float64).reshape(-1)
    if len(d) < 2:
        return 0.0
    return float(100.0 * np.std(d, ddof=1) / np.sqrt(len(d)))
