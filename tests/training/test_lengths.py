"""``--group-by-length``: the shipped architectures score rows cut to their bucket as padded ones; a
model that reads the padding or takes only full-length rows is refused before training, by name;
a run grouped by length trains and records the setting."""
import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.data.pipeline import EncodedData
from rmcompress.errors import UsageError
from rmcompress.models.architectures import build_reward_model
from rmcompress.training.lengths import check_rows, find_slack, row_lengths
from rmcompress.training.trainer import train
from tests.helpers import tiny_config

SEQ = 32


def _data(longest=9, n=80):
    rng = np.random.default_rng(0)
    ids = np.zeros((n, SEQ), np.int32)
    for i, k in enumerate(rng.integers(1, longest + 1, n)):
        ids[i, :k] = rng.integers(1, 200, k)
    return EncodedData("pointwise", ids=ids, labels=np.zeros(n, np.float32))


def test_check_rows_truncate_the_longest_rows_over_the_whole_length():
    ids = np.zeros((6, SEQ), np.int32)
    for i, n in enumerate([5, 5, 9, SEQ, 0, 2]):
        ids[i, :n] = 3 + i
    ids[1, 7] = 4  # a gap in the padding: the length runs to the last real token
    assert row_lengths(ids).tolist() == [5, 8, 9, SEQ, 0, 2]
    rows = check_rows(ids, base=2, lengths=4)
    # the two longest rows (32 and 9 tokens) cut to 1, 11, 21 and 31 tokens (the 9-token row's longer
    # cuts are itself, kept once); the full 32-token row cannot be cut
    assert sorted(row_lengths(rows).tolist()) == [1, 1, 9, 11, 21, 31]
    assert (rows[:, 0] != 0).all()


@pytest.mark.parametrize("arch, slack", [("transformer", 0), ("bert", 0), ("bow", 0), ("cnn", 4)])
def test_the_shipped_architectures_need_no_slack_but_a_convolution_its_width(arch, slack):
    model = build_reward_model(dict(arch=arch, vocab_size=200, seq_len=SEQ, width=16, depth=2, heads=2,
                                    head_dim=8, ffn=32, filters=8, kernel_sizes=[2, 5], hidden=8))
    assert find_slack(model, _data(longest=20)) == slack


def _flatten_model():
    ids = keras.Input(shape=(SEQ,), dtype="int32")
    x = keras.layers.Embedding(200, 4)(ids)
    return keras.Model(ids, keras.layers.Dense(1)(keras.layers.Flatten()(x)), name="flat_reader")


def _padding_reader():
    ids = keras.Input(shape=(SEQ,), dtype="int32")
    x = keras.layers.Embedding(200, 4)(ids)  # id 0 has a vector too, and the average counts it
    return keras.Model(ids, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x)), name="avg_reader")


def test_a_model_that_takes_only_full_rows_is_refused_by_name():
    with pytest.raises(UsageError, match="'flat_reader' does not take rows shorter than 32 tokens"):
        find_slack(_flatten_model(), _data())


def test_a_model_that_reads_the_padding_is_refused_by_name():
    with pytest.raises(UsageError, match="'avg_reader' scores rows cut short of 32 tokens differently"):
        find_slack(_padding_reader(), _data())


def test_a_model_that_reads_the_padding_is_refused_however_long_the_rows_are():
    """The check truncates rows itself: data of full-length rows only does not let such a model through."""
    full = EncodedData("pointwise", ids=np.ones((4, SEQ), np.int32), labels=np.zeros(4, np.float32))
    with pytest.raises(UsageError, match="'avg_reader' scores rows cut short"):
        find_slack(_padding_reader(), full)


def test_every_model_given_is_checked_and_the_largest_slack_kept():
    arch = dict(vocab_size=200, seq_len=SEQ, width=16, depth=1, heads=2, head_dim=8, ffn=32, filters=8,
                kernel_sizes=[3], hidden=8)
    student, teacher = build_reward_model(dict(arch, arch="transformer")), build_reward_model(dict(arch, arch="cnn"))
    assert find_slack([student, teacher], _data()) == 2
    with pytest.raises(UsageError, match="data.group_by_length: model 'avg_reader'.*turn data.group_by_length off"):
        find_slack([student, _padding_reader()], _data(), "data.group_by_length")


def test_a_mixed_precision_model_is_checked_in_float32():
    from rmcompress.training.precision import MIXED, recast

    model = build_reward_model(dict(arch="transformer", vocab_size=200, seq_len=SEQ, width=16, depth=1, heads=2,
                                    head_dim=8, ffn=32))
    assert find_slack(recast(model, MIXED), _data()) == 0


@pytest.mark.parametrize("task_file", ["pointwise_file", "pairwise_file"])
def test_a_run_grouped_by_length_trains_and_records_it(task_file, request):
    task = task_file.split("_")[0]
    res = train(request.getfixturevalue(task_file), tiny_config(task=task, group_by_length=True, max_steps=8),
                None, verbose=0)
    assert res.report["steps"] == 8 and res.report["length_slack"] == 0
    assert res.bundle.metadata["train_config"]["group_by_length"] is True


@pytest.mark.parametrize("name, slack", [("dan", 0), ("kim_cnn", 3), ("parallel_conv", 4), ("keras3_cnn", 3),
                                         ("gru_head", None), ("keras3_transformer", None)])
def test_models_users_wrote_get_the_slack_their_windows_need_or_are_refused(name, slack):
    """A max over unmasked ``valid`` windows of width ``k`` sees one window of padding only with ``k``
    tokens of it kept; an unmasked GRU or attention reads every padding position."""
    from tests.helpers import ZOO_SEQ, ZOO_VOCAB, zoo_model

    rng = np.random.default_rng(0)
    ids = np.zeros((80, ZOO_SEQ), np.int32)
    for i, k in enumerate(rng.integers(1, ZOO_SEQ, 80)):
        ids[i, :k] = rng.integers(2, ZOO_VOCAB, k)
    data = EncodedData("pointwise", ids=ids, labels=np.zeros(80, np.float32))
    model = zoo_model(name)
    if slack is None:
        with pytest.raises(UsageError, match=f"model {model.name!r} scores rows cut short"):
            find_slack(model, data)
    else:
        assert find_slack(model, data) == slack


def _rows(n=150, longest=20, seed=1):
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, SEQ), np.int32)
    for i, k in enumerate(rng.integers(1, longest + 1, n)):
        ids[i, :k] = rng.integers(1, 200, k)
    return ids


@pytest.mark.parametrize("arch", ["bert", "cnn"])
def test_scoring_by_length_gives_the_padded_rewards_in_the_rows_order(arch, monkeypatch):
    from rmcompress.training import lengths

    model = build_reward_model(dict(arch=arch, vocab_size=200, seq_len=SEQ, width=16, depth=2, heads=2,
                                    head_dim=8, ffn=32, filters=8, kernel_sizes=[2, 5], hidden=8))
    ids = _rows()
    widths = []
    real_function = lengths.tf.function

    def spy(fn, **kw):
        traced = real_function(fn, **kw)

        def call(x):
            widths.append(x.shape[1])
            return traced(x)
        return call
    monkeypatch.setattr(lengths.tf, "function", spy)
    slack = lengths.slack_or_none(model, ids)
    assert slack == (4 if arch == "cnn" else 0)
    got = lengths.predict_by_length(model, ids, slack, batch_size=32)
    want = model.predict(ids, batch_size=64, verbose=0)
    assert len(got) == 1 and got[0].shape == want.shape
    np.testing.assert_allclose(got[0], want, atol=1e-5, rtol=1e-5)
    # five batches of sorted rows, each as long as its longest row plus the slack, never past SEQ
    batch_widths = widths[-5:]
    assert batch_widths == sorted(batch_widths) and batch_widths[-1] == min(SEQ, 20 + slack)
    assert batch_widths[0] < batch_widths[-1]


def test_scoring_by_length_returns_every_output_and_a_padding_reader_gets_no_slack():
    from rmcompress.training.distill import feature_model
    from rmcompress.training.lengths import predict_by_length, slack_or_none

    model = build_reward_model(dict(arch="transformer", vocab_size=200, seq_len=SEQ, width=16, depth=1, heads=2,
                                    head_dim=8, ffn=32))
    ids = _rows(n=40)
    reward, feats = predict_by_length(feature_model(model), ids, 0, batch_size=16)
    want_r, want_f = feature_model(model).predict(ids, verbose=0)
    np.testing.assert_allclose(reward, want_r, atol=1e-5)
    np.testing.assert_allclose(feats, want_f, atol=1e-5)
    assert slack_or_none(_padding_reader(), ids) is None
    assert slack_or_none(_flatten_model(), ids) is None
