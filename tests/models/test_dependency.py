"""Structure discovery from a model's layer graph: the groups of every zoo model (couplings through
merges, splits through Concatenate, pins with their reasons), hand counts, and the one-line refusals."""
from __future__ import annotations

import pytest

from rmcompress._keras import keras, tf
from rmcompress.errors import ModelError
from rmcompress.models.dependency import discover
from rmcompress.models.structure import count, structure_of
from rmcompress.models.archconfig import ArchConfig
from tests.helpers import SMALL, ZOO, ZOO_SEQ, ZOO_VOCAB, check_registry_matches_profiler, zoo_model


def _segments(s, layer, role):
    return s.dims[layer][role].segments


def test_kim_cnn_groups_and_wiring():
    m = zoo_model("kim_cnn")
    emb, conv, _, dense = [layer.name for layer in m.layers[:4]]
    s = discover(m)
    assert s.groups == {emb: 16, conv: 12, dense: 10}
    assert _segments(s, conv, "in") == (emb,) and _segments(s, conv, "out") == (conv,)
    assert _segments(s, dense, "in") == (conv,)
    assert s.min_alive == {g: 1 for g in s.groups}
    assert any("the model's output" in p for p in s.pinned)


def test_concatenate_splits_into_its_branches():
    m = zoo_model("parallel_conv")
    s = discover(m)
    convs = [layer.name for layer in m.layers if isinstance(layer, keras.layers.Conv1D)]
    concat = next(layer.name for layer in m.layers if isinstance(layer, keras.layers.Concatenate))
    hidden = next(layer for layer in m.layers if isinstance(layer, keras.layers.Dense) and layer.units == 8)
    assert set(convs) <= set(s.groups)
    assert _segments(s, hidden.name, "in") == _segments(s, concat, "width")
    assert sorted(_segments(s, hidden.name, "in")) == sorted(convs)


@pytest.mark.parametrize("name", ["transformer_postln", "transformer_preln", "keras3_transformer"])
def test_transformer_residual_width_is_one_stream_group(name):
    """The residual stream (embedding columns, every norm, each attention's input rows and output
    columns, each feed-forward output) is one group, gated where it is written."""
    m = zoo_model(name)
    s = discover(m)
    mhas = [layer for layer in m.layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    norms = [layer.name for layer in m.layers if isinstance(layer, keras.layers.LayerNormalization)]
    emb = next(layer.name for layer in m.layers if isinstance(layer, keras.layers.Embedding))
    assert s.streams == (emb,) and s.groups[emb] == m.get_layer(emb).output_dim
    assert all(s.dims[n]["width"].segments == (emb,) and s.writers[n] == "width" for n in norms)
    for mha in mhas:
        assert s.groups[f"{mha.name}_heads"] == mha._num_heads
        assert s.dims[mha.name]["width"].segments == (emb,) and s.dims[mha.name]["out"].segments == (emb,)
        assert s.writers[mha.name] == "out"
    ffn_in = [layer.name for layer in m.layers if isinstance(layer, keras.layers.Dense) and layer.units == 24]
    assert ffn_in and all(s.groups[n] == 24 for n in ffn_in)
    assert all(s.dims[n]["in"].segments == (emb,) and s.input_gates(n) is None for n in ffn_in)  # read ungated
    assert s.writers[emb] == "width"


@pytest.mark.parametrize("maker, reason", [
    (lambda x: keras.layers.BatchNormalization()(x), "BatchNormalization shifts every channel"),
    (lambda x: keras.layers.Activation("sigmoid")(x), "activation is 0.5 at 0"),
    (lambda x: x + 1.0, "with a constant"),
    (lambda x: keras.layers.LayerNormalization(scale=False)(x), "no scale (gamma) to take its gates"),
])
def test_a_layer_that_writes_into_closed_channels_pins_a_normalised_width(maker, reason):
    ids = keras.Input((ZOO_SEQ,), dtype="int32")
    x = keras.layers.Embedding(ZOO_VOCAB, 8, name="emb")(ids)
    x = keras.layers.LayerNormalization()(maker(x))
    m = keras.Model(ids, keras.layers.Dense(1)(keras.layers.GlobalMaxPooling1D()(x)))
    s = discover(m)
    assert "emb" not in s.groups and not s.streams
    assert any(reason in p and "normalised width" in p for p in s.pinned)
    ids2 = keras.Input((ZOO_SEQ,), dtype="int32")  # the same layer where nothing normalises: exact read gates
    y = maker(keras.layers.Embedding(ZOO_VOCAB, 8, name="emb")(ids2))
    m2 = keras.Model(ids2, keras.layers.Dense(1)(keras.layers.GlobalMaxPooling1D()(y)))
    if not isinstance(m2.layers[2], (keras.layers.BatchNormalization, keras.layers.LayerNormalization)):
        assert discover(m2).groups.get("emb") == 8 and not discover(m2).streams


def test_cross_attention_keeps_its_widths():
    """Keras' attention with a query and a value from different tensors reads them whole."""
    ids = keras.Input((ZOO_SEQ,), dtype="int32")
    x = keras.layers.Embedding(ZOO_VOCAB, 8, name="emb")(ids)
    y = keras.layers.Dense(8, name="proj")(x)
    a = keras.layers.MultiHeadAttention(2, 4, name="att")(x, y)
    m = keras.Model(ids, keras.layers.Dense(1)(keras.layers.GlobalMaxPooling1D()(a)))
    s = discover(m)
    assert "emb" not in s.groups and "proj" not in s.groups and s.groups["att_heads"] == 2
    assert "width" not in s.dims.get("att", {})


def test_residual_stream_without_norm_is_one_coupled_group():
    m = zoo_model("residual_gated")
    s = discover(m)
    emb = next(layer.name for layer in m.layers if isinstance(layer, keras.layers.Embedding))
    width12 = [layer.name for layer in m.layers if isinstance(layer, keras.layers.Dense) and layer.units == 12]
    assert s.groups[emb] == 12
    for name in width12:  # every producer into the stream shares the embedding's group
        assert _segments(s, name, "out") == (emb,)
        assert name not in s.groups
    readers = [n for n, d in s.dims.items() if d.get("in") is not None and d["in"].segments == (emb,)]
    assert len(readers) >= 2, readers  # the hidden layer, the sigmoid gate and the reward head read it


def test_recurrent_layers_pin_what_they_read():
    m = zoo_model("gru_head")
    s = discover(m)
    proj = next(layer.name for layer in m.layers if isinstance(layer, keras.layers.Dense) and layer.units == 10)
    assert proj not in s.groups
    assert any("GRU is counted, not pruned" in p for p in s.pinned)


def _hand_groups(cfg: ArchConfig) -> dict:
    """The prunable groups of a shipped architecture, written out by hand from its definition
    (``rmcompress.models.architectures``): what discovery must find in its graph."""
    groups = {"vocab": cfg.vocab_size - 1, "token_embedding": cfg.width}  # the embedding columns
    if cfg.arch in ("transformer", "bert"):
        for i in range(cfg.depth):
            groups.update({f"block{i}_attn_heads": cfg.heads, f"block{i}_ffn_in": cfg.ffn,
                           f"block{i}_attn_block": 1})
    if cfg.arch == "cnn":
        groups.update({f"conv{k}": n for k, n in zip(cfg.kernel_sizes, cfg.per_conv())})
    if cfg.head_hidden or (cfg.arch == "bow" and cfg.hidden):
        groups["hidden"] = cfg.head_hidden or cfg.hidden
    return groups


@pytest.mark.parametrize("arch", ["cnn", "bow", "transformer", "bert"])
def test_shipped_architectures_are_read_from_their_graph(arch):
    """The shipped architectures take the path every model takes: their groups are the ones their
    definition implies (a hand-written cross-check), wired to the layers that read them; the
    attention and feed-forward branches of the pre-LN transformer and the post-LN bert can go
    whole, and each pair of them is a block."""
    from rmcompress.models.architectures import build_reward_model
    cfg = {k: v for k, v in SMALL.items() if k in ArchConfig.__dataclass_fields__}
    if arch == "transformer":
        cfg["head_hidden"] = 12
    cfg = ArchConfig(arch=arch, **cfg)
    model = build_reward_model(cfg)
    found = structure_of(model)
    assert found.groups == _hand_groups(cfg)
    assert found.vocab_embedding == "token_embedding"
    assert found.dims["token_embedding"]["rows"].segments == (1, "vocab")
    assert found.min_alive.get("vocab", 0) == 0
    if arch == "cnn":
        convs = tuple(f"conv{k}" for k in cfg.kernel_sizes)
        reader = "hidden" if cfg.head_hidden else "reward"
        assert sorted(found.dims[reader]["in"].segments) == sorted(convs)
        assert all(found.dims[c]["in"].segments == ("token_embedding",) for c in convs)
    if arch == "bow":
        assert found.dims["hidden" if cfg.hidden else "reward"]["in"].segments == ("token_embedding",)
    if arch in ("transformer", "bert"):
        assert found.streams == ("token_embedding",)  # the residual width: gated where written
        norms = [n for n in found.dims if n.endswith("_norm")]
        assert len(norms) == 2 * cfg.depth + 1 and all(found.writers[n] == "width" for n in norms)
        assert {found.writers[f"block{i}_attn"] for i in range(cfg.depth)} == {"out"}
        assert found.dims["position_embedding"]["width"].segments == ("token_embedding",)
        for i in range(cfg.depth):
            assert found.removals[f"block{i}_attn"].group == f"block{i}_attn_heads"
            assert found.blocks[f"block{i}_attn_block"] == (f"block{i}_attn_heads", f"block{i}_ffn_in")
            assert found.removals[f"block{i}_ffn_in"].removed == tuple(sorted(
                {f"block{i}_ffn_in", f"block{i}_ffn_out", f"block{i}_ffn_dropout", f"block{i}_ffn_residual"}
                | ({f"block{i}_ffn_norm"} if arch == "transformer" else set())))


def test_vocab_rows_are_a_group_only_where_padding_is_masked_by_id():
    """An embedding whose padding mask comes from the embedding itself (``mask_zero``) would mask
    every removed token too: its rows are no group."""
    ids = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(30, 8, mask_zero=True)(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(ids, keras.layers.Dense(1)(x))
    s = discover(model)
    assert "vocab" not in s.groups and s.vocab_embedding is None


def _hand_kim_cnn():
    t = ZOO_SEQ - 2
    conv = 2 * 3 * 16 * 12 * t + 12 * t + 12 * t
    pool = (t - 1) * 12
    dense = 2 * 12 * 10 + 10 + 10
    head = 2 * 10 + 1
    params = ZOO_VOCAB * 16 + 3 * 16 * 12 + 12 + 12 * 10 + 10 + 10 + 1
    return conv + pool + dense + head, params


def _masked_mean(t, w):
    """x * mask, sum over time, sum of the mask, divide."""
    return t * w + (t - 1) * w + (t - 1) + w


def _hand_dan():
    t = ZOO_SEQ
    pool = _masked_mean(t, 16)
    layers = (2 * 16 * 12 + 12 + 12) + (2 * 12 * 8 + 8 + 8) + (2 * 8 + 1)
    params = ZOO_VOCAB * 16 + 16 * 12 + 12 + 12 * 8 + 8 + 8 + 1
    return pool + layers, params


def _hand_transformer():
    """Only the first attention layer sees the padding mask: ``x + a`` drops it (as in Keras)."""
    t, d, h, k, f = ZOO_SEQ, 16, 4, 4, 24
    mha = (2 * t * d * h * 3 * k + 2 * t * t * h * k * 2 + 2 * t * h * k * d
           + t * h * 3 * k + t * d + t * h * k + 3 * h * t * t)
    mask = 2 * t * t + h * t * t  # the mask on the scores
    ln = 7 * t * d
    ffn = (2 * t * d * f + t * f + 8 * t * f) + (2 * t * f * d + t * d)
    add = t * d
    block = mha + ffn + 2 * add + 2 * ln
    pool = (t - 1) * d + d
    head = 2 * d + 1
    params_block = 4 * d * h * k + 3 * h * k + d + 2 * (2 * d) + d * f + f + f * d + d
    return 2 * block + mask + pool + head, ZOO_VOCAB * d + 2 * params_block + d + 1


def _conv(k, c_in, n, t_out, act=1):
    """FLOPs of a Conv1D with bias and an activation of ``act`` FLOPs per output."""
    return 2 * k * c_in * n * t_out + n * t_out + act * n * t_out


def _dense(i, o, act=1):
    return 2 * i * o + o + act * o


def _hand_parallel_conv():
    t, e = ZOO_SEQ, 16
    convs = ((2, 6), (3, 8), (4, 5))
    flops = sum(_conv(k, e, n, t - k + 1) + (t - k) * n for k, n in convs)  # conv + max over time
    flops += _dense(19, 8) + _dense(8, 1, 0)
    params = ZOO_VOCAB * e + sum(k * e * n + n for k, n in convs) + 19 * 8 + 8 + 8 + 1
    return flops, params


def _hand_keras3_cnn():
    t = ZOO_SEQ - 2
    flops = _conv(3, 12, 8, t) + (t - 1) * 8 + _dense(8, 6) + _dense(6, 1, 0)
    return flops, ZOO_VOCAB * 12 + 3 * 12 * 8 + 8 + 8 * 6 + 6 + 6 + 1


def _hand_pairwise_scalar():
    t = ZOO_SEQ - 2  # the final tf.squeeze moves no data: 0 FLOPs
    flops = _conv(3, 12, 10, t) + (t - 1) * 10 + _dense(10, 6) + _dense(6, 1, 0)
    return flops, ZOO_VOCAB * 12 + 3 * 12 * 10 + 10 + 10 * 6 + 6 + 6 + 1


def _hand_batchnorm_cnn():
    t = ZOO_SEQ  # 'same' padding; BatchNormalization 2 per element, ReLU 1
    flops = (_conv(3, 12, 10, t, 0) + 2 * t * 10 + t * 10 + _conv(3, 10, 8, t, 0) + 2 * t * 8 + t * 8
             + (t - 1) * 8 + 8 + _dense(8, 1, 0))
    return flops, ZOO_VOCAB * 12 + 3 * 12 * 10 + 10 + 4 * 10 + 3 * 10 * 8 + 8 + 4 * 8 + 8 + 1


def _hand_residual_gated():
    t, w = ZOO_SEQ, 12
    flops = ((t - 1) * w + w + _dense(w, 16) + _dense(16, w, 0) + w  # pool, hidden, projection, x + y
             + _dense(w, w, 3) + w + w + w + _dense(w, 1, 0))          # sigmoid gate, *, Add, relu, reward
    params = ZOO_VOCAB * w + w * 16 + 16 + 16 * w + w + w * w + w + w + 1
    return flops, params


@pytest.mark.parametrize("name,hand", [("kim_cnn", _hand_kim_cnn), ("dan", _hand_dan),
                                       ("parallel_conv", _hand_parallel_conv), ("keras3_cnn", _hand_keras3_cnn),
                                       ("pairwise_scalar", _hand_pairwise_scalar),
                                       ("batchnorm_cnn", _hand_batchnorm_cnn),
                                       ("residual_gated", _hand_residual_gated),
                                       ("transformer_postln", _hand_transformer),
                                       ("transformer_preln", _hand_transformer)])
def test_count_matches_hand_count(name, hand):
    report = count(zoo_model(name))
    assert (report.flops, report.params) == hand()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_is_counted_and_read(name):
    m = zoo_model(name)
    report = count(m)
    assert report.flops > 0 and report.params == m.count_params()
    s = discover(m)
    assert s.groups, name  # every zoo model has something to prune


@pytest.mark.parametrize("name", ["kim_cnn", "parallel_conv", "dan", "residual_gated"])
def test_count_matches_the_profiler(name):
    check_registry_matches_profiler(zoo_model(name))


# -- refusals ----------------------------------------------------------------------------------------
def test_subclassed_model_is_refused_with_the_way_out():
    class Mine(keras.Model):
        def __init__(self):
            super().__init__()
            self.emb = keras.layers.Embedding(10, 4)
            self.out = keras.layers.Dense(1)

        def call(self, x):
            return self.out(tf.reduce_mean(self.emb(x), axis=1))

    m = Mine()
    m(tf.zeros([1, 5], tf.int32))
    with pytest.raises(ModelError, match="subclassed keras.Model.*functional API"):
        discover(m)


def test_lambda_layer_is_refused_by_name():
    ids = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(10, 4)(ids)
    x = keras.layers.Lambda(lambda v: v * 2.0, name="double")(x)
    m = keras.Model(ids, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x)))
    with pytest.raises(ModelError, match="'double'.*Lambda") as err:
        discover(m)
    assert "\n" not in str(err.value)


def test_a_model_without_a_fixed_length_is_not_counted():
    m = keras.Sequential([keras.layers.Embedding(10, 4), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    assert discover(m).groups  # its structure does not depend on the length
    with pytest.raises(ModelError, match=r"fixed length.*keras.Input\(shape=\(seq_len,\)\)"):
        count(m)


def test_sequential_without_any_input_is_refused():
    m = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(1)])
    with pytest.raises(ModelError, match="no input shape"):
        discover(m)


def test_attention_removal_folds_into_the_layer_that_makes_the_residual():
    post = discover(zoo_model("transformer_postln"))
    pre = discover(zoo_model("transformer_preln"))
    assert post.removals["mha0"].attr == "embeddings" and post.removals["mha1"].attr == "beta"
    assert pre.removals["mha1"].attr == "bias"  # the previous block's FFN output projection
    assert any(n.startswith("layer_normalization") for n in pre.removals["mha1"].removed)
    assert post.min_alive["mha0_heads"] == 0 and post.present["mha0"].factors == ("mha0_heads", "mha0_block")


def test_attention_read_elsewhere_keeps_a_head():
    ids = keras.Input((ZOO_SEQ,), dtype="int32")
    x = keras.layers.Embedding(ZOO_VOCAB, 8)(ids)
    a = keras.layers.MultiHeadAttention(2, 4, name="att")(x, x)
    both = keras.layers.Concatenate()([x + a, a])  # the attention's output is read twice
    m = keras.Model(ids, keras.layers.Dense(1)(keras.layers.GlobalMaxPooling1D()(both)))
    s = discover(m)
    assert "att" not in s.removals and s.min_alive["att_heads"] == 1


def test_feed_forward_removal_folds_its_output_bias_like_attention():
    post = discover(zoo_model("transformer_postln"))
    pre = discover(zoo_model("transformer_preln"))
    ffn = [g for g in post.groups if not g.endswith(("_heads", "_block")) and g not in post.streams]
    assert len(ffn) == 2 and all(post.min_alive[g] == 0 for g in ffn)
    r = post.removals[ffn[0]]
    assert r.group == ffn[0] and r.attr == "beta" and r.bias[1] == "bias" and r.bias[0] in r.removed
    assert ffn[0] in r.removed and any(n.startswith("dropout") for n in r.removed)
    assert all(post.present[n].factors == (ffn[0], "mha0_block") for n in r.removed)
    first = [g for g in pre.groups if not g.endswith(("_heads", "_block")) and g not in pre.streams][0]
    assert pre.removals[first].target == "mha0" and pre.removals[first].attr == "_output_dense.bias"
    assert any(n.startswith("layer_normalization") for n in pre.removals[first].removed)


def test_feed_forward_units_read_elsewhere_keep_one():
    ids = keras.Input((ZOO_SEQ,), dtype="int32")
    x = keras.layers.LayerNormalization()(keras.layers.Embedding(ZOO_VOCAB, 8)(ids))
    h = keras.layers.Dense(12, activation="relu", name="ffn_in")(x)
    x = x + keras.layers.Dense(8, name="ffn_out")(h)
    pooled = keras.layers.Concatenate()([keras.layers.GlobalMaxPooling1D()(x), keras.layers.GlobalMaxPooling1D()(h)])
    m = keras.Model(ids, keras.layers.Dense(1)(pooled))
    s = discover(m)
    assert "ffn_in" not in s.removals and s.min_alive["ffn_in"] == 1


def test_an_attention_and_the_feed_forward_after_it_make_a_block():
    for name in ("transformer_postln", "transformer_preln"):
        s = discover(zoo_model(name))
        assert set(s.blocks) == {"mha0_block", "mha1_block"}
        for i in range(2):
            heads, ffn = s.blocks[f"mha{i}_block"]
            assert heads == f"mha{i}_heads" and s.removals[ffn].group == ffn
            assert s.groups[f"mha{i}_block"] == 1 and s.min_alive[f"mha{i}_block"] == 0
            assert s.present[f"mha{i}"].factors == (heads, f"mha{i}_block")
    ids = keras.Input((ZOO_SEQ,), dtype="int32")
    x = keras.layers.Embedding(ZOO_VOCAB, 8)(ids)
    x = keras.layers.LayerNormalization()(x + keras.layers.MultiHeadAttention(2, 4, name="att")(x, x))
    m = keras.Model(ids, keras.layers.Dense(1)(keras.layers.GlobalMaxPooling1D()(x)))
    assert discover(m).blocks == {}  # no feed-forward branch after it
