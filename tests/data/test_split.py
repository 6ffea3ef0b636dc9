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


def test_auto_mode_keeps_contained_texts_apart_and_says_why():
    from rmcompress.data.loaders import PairwiseData
    from rmcompress.data.split import resolve_mode

    nested = PointwiseData(["a truly great film", "truly great", "a dull plot", "dull", "fine"] * 1,
                           np.ones(5, np.float32), "binary", source="s.tsv")
    mode, note = resolve_mode(nested, "auto")
    assert mode == "sentences" and note.startswith("s.tsv: 2 of 5 texts occur inside another text")
    tr_auto, va_auto = split_data(nested, 0.34, 1)
    tr_s, va_s = split_data(nested, 0.34, 1, mode="sentences")
    assert va_auto.texts == va_s.texts and tr_auto.texts == tr_s.texts
    # a repeated text is the same leak: one copy would train, the other validate
    repeats = PointwiseData(["good", "bad", "good"], np.ones(3, np.float32), "binary")
    assert resolve_mode(repeats, "auto")[0] == "sentences"
    flat = PointwiseData(["alpha", "beta", "gamma", "delta"], np.ones(4, np.float32), "binary")
    assert resolve_mode(flat, "auto") == ("random", "")
    for seed in range(3):
        assert split_data(flat, 0.25, seed)[1].texts == split_data(flat, 0.25, seed, mode="random")[1].texts
    pairs = PairwiseData(["a b", "a"], ["c", "c d"], np.zeros(2, np.float32))
    assert resolve_mode(pairs, "auto") == ("random", "")
    assert resolve_mode(nested, "disjoint") == ("disjoint", "")


def test_auto_mode_skips_the_check_on_huge_files_and_says_so(monkeypatch):
    import rmcompress.data.split as split

    monkeypatch.setattr(split, "AUTO_CHECK_WORK", 10)
    data = PointwiseData(["a truly great film", "truly great"], np.ones(2, np.float32), "binary", source="big.tsv")
    mode, note = split.resolve_mode(data, "auto")
    assert mode == "random" and "big.tsv" in note and "--split sentences" in note


def test_hash_mode_splits_by_the_text_whatever_the_order():
    from rmcompress.data.loaders import PairwiseData

    texts = [f"text number {i}" for i in range(300)]
    data = PointwiseData(texts, np.arange(300, dtype=np.float32) % 2, "binary")
    tr, va = split_data(data, 0.2, seed=1, mode="hash")
    assert 30 < len(va) < 90 and not set(tr.texts) & set(va.texts) and len(tr) + len(va) == 300
    shuffled = PointwiseData(texts[::-1], data.labels[::-1], "binary")
    assert sorted(split_data(shuffled, 0.2, seed=7, mode="hash")[1].texts) == sorted(va.texts)  # no seed, no order
    pairs = PairwiseData(texts, texts[::-1], np.zeros(300, np.float32))
    _, pva = split_data(pairs, 0.2, mode="hash")
    assert pva.chosen != va.texts  # a pair hashes its two texts together
