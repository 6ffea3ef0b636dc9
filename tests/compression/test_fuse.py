"""fuse: every rewrite is checked against the model it came from (float outputs within 1e-5)."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.compression.fuse import fuse, max_abs_diff
from rmcompress.layers.compressed import FusedQKVSelfAttention, PointwiseDense
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from tests.helpers import SMALL, randomize, token_ids


@pytest.fixture(scope="module")
def transformer():
    return randomize(build_reward_model(ArchConfig(arch="transformer", **SMALL)))


def test_fuse_transformer_is_exact_and_removes_ops(transformer):
    ids = token_ids()
    fused, note = fuse(transformer, ids)
    assert note["max_abs_diff"] <= 1e-5
    assert max_abs_diff(transformer, fused, token_ids(seed=7)) <= 1e-5  # also on rows it was not checked on
    kinds = [type(l) for l in fused.layers]
    assert keras.layers.Dropout not in kinds
    assert kinds.count(FusedQKVSelfAttention) == 2 and kinds.count(PointwiseDense) == 4
    assert sorted(note["fused_qkv"]) == ["block0_attn", "block1_attn"]
    norms = {l.name: l for l in fused.layers if isinstance(l, keras.layers.LayerNormalization)}
    for name in ("block0_attn_norm", "block0_ffn_norm", "block1_attn_norm", "block1_ffn_norm"):
        assert not norms[name].center and not norms[name].scale and norms[name].weights == []
    # feeds the masked mean pooling: only its scale moves into the reward head (the offset would
    # not be exact for an all-padding row, which pools to 0)
    assert not norms["final_norm"].scale and norms["final_norm"].center
    assert [w.name.split("/")[-1].split(":")[0] for w in norms["final_norm"].weights] == ["beta"]
    assert note["folded_layernorm_scale"] == ["final_norm -> pool -> reward"]
    empty = np.zeros((2, 16), np.int32)  # no tokens at all
    np.testing.assert_allclose(fused.predict(empty, verbose=0), transformer.predict(empty, verbose=0), atol=1e-6)
    assert fused.count_params() < transformer.count_params()
    assert not any(l.name.endswith("dropout") for l in fused.layers)


def test_fuse_keeps_the_source_model_untouched(transformer):
    before = [w.copy() for w in transformer.get_weights()]
    fuse(transformer, token_ids())
    assert all(np.array_equal(a, b) for a, b in zip(before, transformer.get_weights()))


@pytest.mark.parametrize("arch", ["cnn", "bow"])
def test_fuse_other_architectures(arch):
    model = randomize(build_reward_model(ArchConfig(arch=arch, **SMALL)), seed=3)
    fused, note = fuse(model, token_ids())
    assert note["max_abs_diff"] <= 1e-5 and note["removed_dropout"]


def test_batchnorm_folds_into_the_preceding_dense():
    x = keras.Input((8,))
    h = keras.layers.Dense(6, name="d1")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="act")(h)
    y = keras.layers.Dense(1, name="out")(h)
    model = randomize(keras.Model(x, y), seed=4)
    data = np.random.RandomState(0).randn(32, 8).astype(np.float32)
    fused, note = fuse(model, data)
    assert note["folded_batchnorm"] == ["bn -> d1"]
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in fused.layers)
    assert note["max_abs_diff"] <= 1e-5


def test_consecutive_linear_dense_layers_merge_only_when_cheaper():
    x = keras.Input((8,))
    y = keras.layers.Dense(1, name="c")(keras.layers.Dense(4, activation="relu", name="b")(
        keras.layers.Dense(16, name="a")(x)))
    model = randomize(keras.Model(x, y), seed=5)
    data = np.random.RandomState(0).randn(16, 8).astype(np.float32)
    fused, note = fuse(model, data)
    assert note["merged_dense"] == ["a + b"]  # 8*4 < 8*16 + 16*4; b keeps its ReLU, c is not merged (b is not linear)
    assert [l.name for l in fused.layers if isinstance(l, keras.layers.Dense)] == ["b", "c"]
    assert note["max_abs_diff"] <= 1e-5
    # a bottleneck is already cheaper than its product: left alone
    x = keras.Input((32,))
    y = keras.layers.Dense(32, name="up")(keras.layers.Dense(4, name="down")(x))
    model = randomize(keras.Model(x, y), seed=6)
    _, note = fuse(model, np.random.RandomState(0).randn(4, 32).astype(np.float32))
    assert note["merged_dense"] == []


def test_fused_model_saves_loads_and_converts(tmp_path, transformer):
    from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
    from rmcompress.export.parity import parity_metrics
    from rmcompress.runtime.tflite import TFLiteRunner, convert
    from rmcompress.models.modeldir import load_model_dir, save_model_dir

    ids = token_ids()
    fused, _ = fuse(transformer, ids)
    tok = Tokenizer(["[PAD]", "[UNK]"] + [f"w{i}" for i in range(58)], TokenizerConfig(seq_len=ids.shape[1]))
    save_model_dir(tmp_path / "m", fused, tok, {"task": "pointwise"})
    loaded = load_model_dir(tmp_path / "m").model
    assert max_abs_diff(fused, loaded, ids) == 0.0
    flat = convert(loaded)
    got = TFLiteRunner(flat).score(ids)
    assert parity_metrics(fused.predict(ids, verbose=0), got)["parity_max_abs_diff"] <= 1e-4


def test_fused_layers_are_counted_by_the_registry(transformer):
    from rmcompress.models.structure import count

    fused, note = fuse(transformer, token_ids())
    # same multiply-adds; only the score scale (h*T*T per attention layer) moved into Wq
    attn = [transformer.get_layer(n) for n in note["folded_score_scale"]]
    assert attn, note
    t = transformer.input_shape[1]
    scale_flops = sum(a.num_heads * t * t for a in attn)
    assert count(fused).flops == count(transformer).flops - scale_flops


def test_large_rewards_are_checked_at_their_own_scale(transformer):
    """Large rewards move by more than 1e-5 when float32 sums are reordered. The bound is
    ``tolerance * max(1, max |r|)``: exact rewrites pass, a tighter tolerance still fails."""
    from rmcompress.compression.settings import FuseSettings
    from rmcompress.errors import ModelError

    big = keras.models.clone_model(transformer)
    big.set_weights(transformer.get_weights())
    kernel, bias = big.get_layer("reward").get_weights()
    big.get_layer("reward").set_weights([kernel * 1e5, bias])
    ids = token_ids()
    scale = float(np.max(np.abs(big.predict(ids, verbose=0))))
    assert scale > 100
    fused, note = fuse(big, ids)
    assert 1e-5 < note["max_abs_diff"] <= 1e-5 * scale
    with pytest.raises(ModelError, match=r"differs from the original by .* \(tolerance 1e-09 x max\(1, max"):
        fuse(big, ids, FuseSettings(tolerance=1e-9))
