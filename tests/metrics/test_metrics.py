"""Rank statistics agree with their definitions on tied scores: AUC as the share of (positive,
negative) pairs ordered right (ties count half), Spearman as Pearson's correlation of average
ranks (and as ``scipy.stats.spearmanr``)."""
import itertools

import numpy as np
import pytest
from scipy import stats

from rmcompress.metrics import auc, quality_metrics, spearman

TIED_SCORES = np.array([0.2, 0.2, 0.5, 0.5, 0.5, 0.9, -0.1, 0.2, 0.9, 0.0])
TIED_LABELS = np.array([0, 1, 1, 0, 1, 1, 0, 0, 1, 0])


def _auc_by_pairs(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return sum(wins) / len(wins)


def _average_ranks(x):
    return np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2 for v in x])


def test_auc_counts_tied_pairs_as_half():
    expected = _auc_by_pairs(TIED_SCORES, TIED_LABELS)
    assert expected not in (0.0, 0.5, 1.0)  # the ties matter: a pair-order AUC of 0.5 would hide a bug
    assert auc(TIED_SCORES, TIED_LABELS) == pytest.approx(expected, abs=1e-12)
    assert quality_metrics("pointwise", TIED_SCORES, TIED_LABELS)["auc"] == pytest.approx(expected, abs=1e-12)
    assert auc([0.3, 0.3, 0.3], [0, 1, 1]) == pytest.approx(0.5)
    assert np.isnan(auc([0.1, 0.2], [1, 1]))


def test_spearman_on_ties_is_pearson_of_average_ranks():
    b = np.array([3.0, 1.0, 1.0, 2.0, 5.0, 5.0, 0.0, 1.0, 4.0, 2.0])
    ra, rb = _average_ranks(TIED_SCORES), _average_ranks(b)
    expected = np.corrcoef(ra, rb)[0, 1]
    assert spearman(TIED_SCORES, b) == pytest.approx(expected, abs=1e-12)
    assert spearman(TIED_SCORES, b) == pytest.approx(stats.spearmanr(TIED_SCORES, b).statistic, abs=1e-12)
    assert spearman([1, 2, 3], [10, 20, 15]) == pytest.approx(0.5)
    assert np.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # a constant ranks nothing
    assert np.isnan(spearman([1.0], [2.0]))


def test_paired_drop_se_is_the_standard_error_of_the_per_row_difference():
    from rmcompress.metrics import correct_rows, paired_drop_se

    src = correct_rows("pointwise", [1.0, 2.0, -1.0, 0.5], [1, 1, 0, 0])  # right, right, right, wrong
    mine = correct_rows("pointwise", [1.0, -2.0, -1.0, 0.5], [1, 1, 0, 1])  # right, wrong, right, right
    assert src.tolist() == [1, 1, 1, 0] and mine.tolist() == [1, 0, 1, 1]
    d = np.array([0.0, 1.0, 0.0, -1.0])
    assert paired_drop_se(src, mine) == pytest.approx(100 * d.std(ddof=1) / 2)  # 40.8 points
    # rows both models get right or both get wrong add no error, only flips do
    assert paired_drop_se([1, 0, 1, 1], [1, 0, 1, 1]) == 0.0
    many = paired_drop_se(np.r_[np.ones(10), np.zeros(990)], np.zeros(1000))  # 10 flips in 1,000 rows
    assert many == pytest.approx(100 * np.sqrt(0.01 * 0.99 * 1000 / 999) / np.sqrt(1000))
    assert correct_rows("pairwise", ([1.0, 0.0], [0.0, 1.0])).tolist() == [1.0, 0.0]
    assert paired_drop_se([1], [0]) == 0.0


def test_rounding_bound_scales_with_the_largest_reward_and_is_absolute_below_one():
    from rmcompress.metrics import rounding_bound

    assert rounding_bound([0.2, -0.5], 1e-5) == pytest.approx(1e-5)
    assert rounding_bound([3.0, -20.0], 1e-5) == pytest.approx(2e-4)
    assert rounding_bound([], 1e-5) == pytest.approx(1e-5)
