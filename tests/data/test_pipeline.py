"""Encoded datasets grouped by length: each batch holds rows of one bucket, cut only where every row
is padding; every row comes once per pass; pairs are cut to the longer text; the order follows the seed."""
import numpy as np
import pytest

from rmcompress.data.pipeline import EncodedData, batch_by_length, length_step
from rmcompress._keras import tf


def _ids(n=120, seq_len=32, seed=0, longest=None):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, (longest or seq_len) + 1, n)
    ids = np.zeros((n, seq_len), np.int32)
    for i, k in enumerate(lengths):
        ids[i, :k] = rng.integers(1, 50, k)
    return ids, lengths


def test_length_step_gives_at_most_eight_lengths():
    assert [length_step(t) for t in (1, 8, 16, 64, 65, 256)] == [1, 1, 2, 8, 9, 32]
    for t in (8, 64, 65, 256):
        assert len(range(length_step(t), t + length_step(t), length_step(t))) <= 8


def test_batches_hold_one_bucket_cut_only_in_the_padding():
    ids, lengths = _ids()
    data = EncodedData("pointwise", ids=ids, labels=np.arange(len(ids), dtype=np.float32))
    seen = []
    for x, y in data.dataset(8, shuffle=True, seed=3, group_by_length=True, slack=0):
        rows = y.numpy().astype(int)
        seen += rows.tolist()
        t = x.shape[1]
        assert t % 4 == 0 and t >= lengths[rows].max() and t - 4 < lengths[rows].min()  # one bucket of width 4
        np.testing.assert_array_equal(x.numpy(), ids[rows, :t])
        assert not ids[rows, t:].any()  # only padding was cut
    assert sorted(seen) == list(range(len(ids)))  # each row once per pass


def test_the_grouped_stream_is_a_function_of_the_seed():
    ids, _ = _ids()
    data = EncodedData("pointwise", ids=ids, labels=np.arange(len(ids), dtype=np.float32))

    def order(seed):
        return [y.numpy().tolist() for _, y in data.dataset(8, shuffle=True, seed=seed, repeat=True,
                                                              group_by_length=True, slack=0).take(30)]
    assert order(1) == order(1) and order(1) != order(2)


def test_pairs_are_cut_to_their_longer_text_and_teacher_columns_follow():
    ids, lengths = _ids()
    rejected = ids[::-1].copy()
    data = EncodedData("pairwise", chosen=ids, rejected=rejected, margin=np.arange(len(ids), dtype=np.float32),
                       teacher=np.zeros(len(ids)), labeled=np.ones(len(ids)))
    for b in data.dataset(16, group_by_length=True, slack=0):
        rows = b["margin"].numpy().astype(int)
        t = b["chosen"].shape[1]
        assert b["rejected"].shape[1] == t and t >= max(lengths[rows].max(), lengths[::-1][rows].max())
        np.testing.assert_array_equal(b["rejected"].numpy(), rejected[rows, :t])
        assert b["teacher"].shape == (len(rows),)


def test_pointwise_with_a_teacher_cuts_the_ids_only():
    ids, _ = _ids(longest=8)
    data = EncodedData("pointwise", ids=ids, labels=np.arange(len(ids), dtype=np.float32),
                       teacher=np.full(len(ids), 2.0), labeled=np.ones(len(ids)))
    x, y = next(iter(data.dataset(8, group_by_length=True, slack=0)))
    assert set(x) == {"ids", "teacher", "labeled"} and x["ids"].shape[1] <= 8
    np.testing.assert_array_equal(x["teacher"].numpy(), np.full(len(y), 2.0))


def test_drop_remainder_keeps_full_batches_only():
    ids, _ = _ids()
    ds = tf.data.Dataset.from_tensor_slices(ids)
    sizes = [b.shape[0] for b in batch_by_length(ds, 8, drop_remainder=True)]
    assert sizes and set(sizes) == {8}
    with pytest.raises(StopIteration):
        next(iter(batch_by_length(ds.take(0), 8)))


def test_inside_grouped_by_length_only_repeated_streams_that_do_not_say_otherwise_are_grouped():
    from rmcompress.data.pipeline import grouped_by_length, grouping

    ids, _ = _ids(longest=8)
    data = EncodedData("pointwise", ids=ids, labels=np.zeros(len(ids), np.float32))
    assert grouping(None, None, True) == (False, 0)
    with grouped_by_length(2):
        assert grouping(None, None, True) == (True, 2)
        assert grouping(None, None, False) == (False, 0)  # an evaluation stream keeps its length
        assert grouping(False, None, True) == (False, 0)
        x, _ = next(iter(data.dataset(8, shuffle=True, repeat=True)))
        assert x.shape[1] <= 12  # 8 tokens + 2 of slack, in buckets of 4
        assert next(iter(data.dataset(8)))[0].shape[1] == ids.shape[1]
    assert grouping(None, None, True) == (False, 0)
