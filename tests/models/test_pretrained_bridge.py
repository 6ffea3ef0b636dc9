"""The keras-nlp -> tf_keras bridge on tiny randomly initialised BERT / DistilBERT backbones."""
from __future__ import annotations

import math

import numpy as np
import pytest


def _erf(x):
    """float64 erf of an array (TensorFlow's kernel: a vectorised math.erf is too slow here)."""
    from rmcompress._keras import tf

    return tf.math.erf(tf.constant(x, tf.float64)).numpy()

from rmcompress.data import synthetic as S
from rmcompress.errors import ModelError, UsageError
from tests.helpers import SHARED_DATA

pytestmark = pytest.mark.slow  # pretrained backbones

WORDS = (S.POS_ADJ + S.NEG_ADJ + S.NOUNS + S.ADVERBS + S.FILLER + list(S.POS_VERB) + list(S.NEG_VERB)
         + "a is i did not never always but the , . ? : ! ##s ##ly ##ing".split())
TEXTS = S.pointwise_frame(40, seed=3).sentence.tolist() + [
    "", "Surprisingly CHARMING films, and a boring plot!", "zzz unknown-words everywhere",
    " ".join(["good"] * 40)]


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    from rmcompress.models.backbones import save_random_preset

    root = tmp_path_factory.mktemp("presets")
    return {fam: save_random_preset(root / fam, WORDS, family=fam, seed=i)
            for i, fam in enumerate(("bert", "distil_bert"))}


def real_texts(n=24):
    """SST-2 sentences when the shared data is there (else the synthetic ones)."""
    from pathlib import Path

    p = SHARED_DATA / "sst2" / "train.tsv"
    if not p.exists():
        return TEXTS
    import pandas as pd

    df = pd.read_csv(p, sep="\t", nrows=3000)
    long = df[df.sentence.str.split().str.len() > 12].sentence.tolist()
    return long[:n] + TEXTS[-4:]


@pytest.mark.parametrize("family", ["bert", "distil_bert"])
def test_bridged_encoder_equals_keras3_backbone(presets, family):
    from rmcompress.models.backbones import keras3_pooled, load_backbone, load_pretrained, pooled_model

    ps = load_pretrained(presets[family], seq_len=24, dropout=0.0, match="keras")
    backbone, _ = load_backbone(presets[family])
    scorer = ps.build()
    ids = ps.tokenizer.encode(real_texts())
    assert (ids != 0).sum(1).min() >= 2 and (ids[:, -1] != 0).any()  # [CLS][SEP] only .. full rows
    ref = keras3_pooled(backbone, ids)
    got = pooled_model(scorer).predict(ids, verbose=0)
    assert np.abs(ref).mean() > 0.1  # not a degenerate all-zero comparison
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    assert scorer.output_shape == (None, 1)


def test_tokenizer_matches_keras_nlp_with_cls_sep_and_truncation(presets):
    import keras_nlp

    from rmcompress.models.backbones import load_pretrained

    kt = keras_nlp.models.Tokenizer.from_preset(str(presets["bert"]))
    vocab = kt.get_vocabulary()
    cls, sep, unk = vocab.index("[CLS]"), vocab.index("[SEP]"), vocab.index("[UNK]")
    assert (cls, sep, unk) == (5, 6, 4)
    n = 10
    for keep in ("start", "end"):
        tok = load_pretrained(presets["bert"], seq_len=n, keep=keep, match="keras").tokenizer
        assert tok.special_ids() == {"pad": 0, "unk": 4, "cls": 5, "sep": 6}
        ids = tok.encode(TEXTS)
        for text, row in zip(TEXTS, ids):
            pieces = [int(i) for i in np.asarray(kt([text]))[0]]
            pieces = pieces[: n - 2] if keep == "start" else pieces[len(pieces) - (n - 2):] if len(pieces) > n - 2 else pieces
            expect = [cls, *pieces, sep] + [0] * (n - 2 - len(pieces))
            assert row.tolist() == expect, text
    assert unk in ids[TEXTS.index("zzz unknown-words everywhere")]
    assert ids[TEXTS.index("")].tolist()[:3] == [cls, sep, 0]


def _numpy_bert_pooled(backbone, ids, gelu_exact: bool):
    """An independent forward pass of keras-nlp's BERT in numpy (float64) from its own weights."""
    g = lambda name: np.asarray(backbone.get_layer(name).get_weights()[0], np.float64)  # noqa: E731

    def ln(x, layer):
        gamma, beta = (np.asarray(w, np.float64) for w in layer.get_weights())
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * gamma + beta

    def gelu(x):
        if gelu_exact:
            return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    t = ids.shape[1]
    x = g("token_embedding")[ids] + g("position_embedding")[:t] + g("segment_embedding")[0]
    x = ln(x, backbone.get_layer("embeddings_layer_norm"))
    mask = (ids != 0)
    for enc in backbone.transformer_layers:
        att = enc._self_attention_layer
        w = lambda d: (np.asarray(d.kernel, np.float64), np.asarray(d.bias, np.float64))  # noqa: E731
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = (w(att.query_dense), w(att.key_dense), w(att.value_dense),
                                                  w(att.output_dense))
        q = np.einsum("btd,dhk->bhtk", x, wq) + bq[None, :, None, :]
        k = np.einsum("btd,dhk->bhtk", x, wk) + bk[None, :, None, :]
        v = np.einsum("btd,dhk->bhtk", x, wv) + bv[None, :, None, :]
        s = np.einsum("bhqk,bhsk->bhqs", q, k) / math.sqrt(q.shape[-1])
        s = np.where(mask[:, None, None, :], s, -1e9)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        ctx = np.einsum("bhqs,bhsk->bhqk", p, v)
        x = ln(x + np.einsum("bhtk,hkd->btd", ctx, wo) + bo, enc._self_attention_layer_norm)
        wi, bi = w(enc._feedforward_intermediate_dense)
        w2, b2 = w(enc._feedforward_output_dense)
        x = ln(x + gelu(x @ wi + bi) @ w2 + b2, enc._feedforward_layer_norm)
    m = mask[..., None]
    return (x * m).sum(1) / np.maximum(m.sum(1), 1)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
def test_bridged_encoder_equals_numpy_reference_for_both_gelu_forms(presets, activation):
    """The erf form (what Hugging Face BERT checkpoints use) and the tanh form (keras-nlp's BERT)."""
    from rmcompress.models.backbones import bridge, load_backbone, pooled_model

    backbone, kt = load_backbone(presets["bert"])
    ps = bridge(backbone, kt, seq_len=20, dropout=0.0, activation=activation)
    assert ps.arch.activation == activation
    ids = ps.tokenizer.encode(TEXTS)
    ref = _numpy_bert_pooled(backbone, ids, gelu_exact=activation == "gelu")
    got = pooled_model(ps.build()).predict(ids, verbose=0)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    other = _numpy_bert_pooled(backbone, ids, gelu_exact=activation != "gelu")
    assert np.abs(got - other).max() > 1e-4  # the two forms are told apart at this tolerance


def test_bert_architecture_layer_names_registry_and_roundtrip(presets, tmp_path):
    from rmcompress.models.structure import count
    from rmcompress.models.backbones import load_pretrained
    from rmcompress.models.modeldir import load_model_dir, save_model_dir

    ps = load_pretrained(presets["bert"], seq_len=16, dropout=0.1)
    scorer = ps.build()
    names = {layer.name for layer in scorer.layers}
    for expected in ("token_embedding", "position_embedding", "embedding_norm", "block0_attn",
                     "block0_attn_residual", "block0_attn_norm", "block0_ffn_in", "block0_ffn_out",
                     "block0_ffn_residual", "block0_ffn_norm", "block1_attn", "pool", "reward"):
        assert expected in names
    rep = count(scorer)
    assert rep.params == scorer.count_params()
    d, h, f, t = 16, 2, 32, 16
    attn_row = rep.table.set_index("layer").loc["block0_attn"]
    assert attn_row.params == 4 * d * d + 4 * d
    assert rep.table.set_index("layer").loc["block0_ffn_in"].flops == 2 * d * f * t + f * t + 9 * f * t
    save_model_dir(tmp_path / "m", scorer, ps.tokenizer, {"task": "pointwise", "arch": ps.arch.to_dict()})
    back = load_model_dir(tmp_path / "m")
    ids = ps.tokenizer.encode(TEXTS[:8])
    np.testing.assert_allclose(back.model.predict(ids, verbose=0), scorer.predict(ids, verbose=0), atol=1e-6)
    assert back.tokenizer.mode == "bert" and back.tokenizer.vocabulary == ps.tokenizer.vocabulary


def test_zero_heads_or_ffn_units_fold_the_output_bias_into_the_norm_before(presets):
    """A post-LN block with every head (or FFN unit) pruned still adds that sub-layer's bias:
    ``shrink`` folds it into the LayerNorm before the branch, and the shrunk model is a ``bert``
    with 0 heads (0 FFN units) there, equal to the model it came from."""
    from rmcompress.layers.gates import gate_layers
    from rmcompress.models.backbones import load_pretrained
    from rmcompress.models.structure import count, infer_arch_config
    from rmcompress.structured.gating import gated_copy
    from rmcompress.structured.shrink import shrink

    ps = load_pretrained(presets["bert"], seq_len=16, dropout=0.0)
    full = ps.build()
    attn = full.get_layer("block0_attn")
    w = attn.get_weights()
    w[6] = np.zeros_like(w[6])  # output kernel 0: the attention output is its bias alone
    w[7] = np.linspace(-1, 1, w[7].size).astype("float32")
    attn.set_weights(w)
    ffn_out = full.get_layer("block1_ffn_out")
    ffn_out.set_weights([np.zeros_like(ffn_out.get_weights()[0]), np.full_like(ffn_out.get_weights()[1], 0.3)])
    gated = gated_copy(full)
    gates = gate_layers(gated)
    gates["block0_attn_heads"].log_alpha.assign(np.full(gates["block0_attn_heads"].units, -30.0, np.float32))
    gates["block1_ffn_in"].log_alpha.assign(np.full(gates["block1_ffn_in"].units, -30.0, np.float32))
    small = shrink(gated)
    cfg = infer_arch_config(small)
    assert cfg.heads[0] == 0 and cfg.ffn[1] == 0 and cfg.heads[1] > 0 and cfg.ffn[0] > 0
    ids = ps.tokenizer.encode(TEXTS)
    np.testing.assert_allclose(small.predict(ids, verbose=0), full.predict(ids, verbose=0), atol=1e-5)
    assert count(small).flops < count(full).flops


def test_preset_name_path_through_mocked_kaggle_download(presets, monkeypatch):
    """Offline, a preset *name* is checked by replacing keras-hub's download with the tiny preset."""
    import kagglehub

    from rmcompress.models.backbones import load_pretrained

    calls = []

    def fake_download(handle, path=None):
        calls.append(handle)
        return str(presets["bert"] / path) if path else str(presets["bert"])

    monkeypatch.setattr(kagglehub, "model_download", fake_download)
    ps = load_pretrained("bert_tiny_en_uncased", seq_len=12)
    assert calls and all("bert_tiny_en_uncased" in c for c in calls)
    assert ps.arch.arch == "bert" and ps.arch.depth == 2 and ps.info["backbone"] == "bert_tiny_en_uncased"


def test_bad_backbones_are_one_line_model_errors(tmp_path, presets):
    import keras_nlp

    from rmcompress.models.backbones import bridge, load_pretrained

    with pytest.raises(ModelError, match="no such backbone folder"):
        load_pretrained(str(tmp_path / "nope" / "x"), 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_pretrained(tmp_path / "empty", 16)
    with pytest.raises(ModelError, match="cannot load"):
        load_pretrained("no_such_preset_name", 16)
    with pytest.raises(UsageError, match="exceeds the backbone's 64 positions"):
        load_pretrained(presets["bert"], 65)
    roberta = keras_nlp.models.RobertaBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
                                               intermediate_dim=16, max_sequence_length=16)
    with pytest.raises(ModelError, match="RobertaBackbone is not supported"):
        bridge(roberta, None, 8)


def test_tfmot_pruning_and_qat_apply_to_the_bridged_encoder(presets):
    """The Dense layers of a bridged (exact-GELU) encoder take tfmot's pruning and QAT wrappers."""
    import tensorflow_model_optimization as tfmot

    from rmcompress._keras import keras
    from rmcompress.models.backbones import bridge, load_backbone

    backbone, kt = load_backbone(presets["bert"])
    ps = bridge(backbone, kt, seq_len=16, dropout=0.0, activation="gelu")
    scorer = ps.build()
    sparsity = tfmot.sparsity.keras
    schedule = sparsity.ConstantSparsity(0.5, 0, frequency=1)

    def prune(layer):
        if isinstance(layer, keras.layers.Dense):
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer.__class__.from_config(layer.get_config())

    pruned = keras.models.clone_model(scorer, clone_function=prune)
    ids = ps.tokenizer.encode(TEXTS)
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(ids, np.zeros(len(ids)), epochs=1, batch_size=16, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    assert (stripped.get_layer("block0_ffn_in").kernel.numpy() == 0).mean() == pytest.approx(0.5, abs=0.01)

    def annotate(layer):
        if isinstance(layer, keras.layers.Dense):
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        return layer

    qat = tfmot.quantization.keras.quantize_apply(keras.models.clone_model(stripped, clone_function=annotate))
    assert qat.predict(ids, verbose=0).shape == (len(TEXTS), 1)
