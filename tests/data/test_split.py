"""Deterministic splits; SST-2-style phrase leakage removed by 'disjoint'/'sentences'."""
import numpy as np

from rmcompress.data.loaders import PointwiseData
from rmcompress.data.split import root_indices, split_data, split_indices


def test_split_is_deterministic_and_disjoint():
    a = split_indices(100, 0.2, seed=3)
    b = split_indices(100, 0.2, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(a[1]) == 20 and not set(a[0]) & set(a[1])
    assert not np.array_equal(split_indices(100, 0.2, seed=4)[1], a[1])


def test_sentences_mode_holds_out_full_sentences_and_their_phrases():
    texts = ["a truly great film", "truly great", "great", "a dull plot", "dull", "plot twists galore", "galore"]
    data = PointwiseData(texts, np.ones(len(texts), np.float32), "binary")
    assert [texts[i] for i in root_indices(texts)] == ["a truly great film", "a dull plot", "plot twists galore"]
    for seed in range(5):
        tr, va = split_data(data, 0.34, seed, mode="sentences")
        assert len(va) == 1 and va.texts[0] in ("a truly great film", "a dull plot", "plot twists galore")
        assert all(t not in va.texts[0] for t in tr.texts)
