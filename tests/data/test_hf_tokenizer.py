"""The Hugging Face tokenizer.json gives the project's ids: synthetic texts always, real data when present."""
import json

import numpy as np
import pytest

from rmcompress.data.hf_tokenizer import hf_tokenizer, load_hf_tokenizer
from rmcompress.data.tokenizer import CLS, PAD, SEP, UNK, Tokenizer, TokenizerConfig
from rmcompress.errors import ModelError

from tests.helpers import shared_data

WORDS = ["the", "film", "is", "good", "bad", "cafe", "naive", "movie", "great", "!", ",", ".", "'", "?", "-",
         "##s", "##ing", "##ed", "un", "##believ", "##able", "a", "i", "it", "s", "x", "中", "文"]
TEXTS = [
    "The film is GOOD!", "Café naïve... un-believable, isn't it?", "  spaces\tand\ttabs\nand lines  ",
    "", "?!?!", "中文字 mixed with Latin", "unbelievable films filmed filming", "ÀÉÎÕÜ çà", "x" * 150,
    "a\u200bzero\u00adwidth and\x07control", "the film " * 30, "emoji 🙂 and ½ and ﬁ ligature",
]


def _vocab(mode):
    head = [PAD, UNK, CLS, SEP] if mode == "bert" else [PAD, UNK]
    return head + WORDS


def _hf_ids(tok, texts):
    return np.array([e.ids for e in hf_tokenizer(tok).encode_batch(texts)], np.int32)


@pytest.mark.parametrize("mode", ["wordpiece", "bert"])
@pytest.mark.parametrize("keep", ["start", "end"])
@pytest.mark.parametrize("lowercase, strip_accents", [(True, True), (False, False), (True, False)])
def test_same_ids_on_synthetic_texts(mode, keep, lowercase, strip_accents):
    tok = Tokenizer(_vocab(mode), TokenizerConfig(seq_len=12, keep=keep, mode=mode, lowercase=lowercase,
                                                  strip_accents=strip_accents))
    ours = tok.encode(TEXTS)
    np.testing.assert_array_equal(_hf_ids(tok, TEXTS), ours)
    assert (ours != 1).any() and (ours[:, -1] == 0).any() and (ours[:, -1] != 0).any()  # texts that pad and cut


def test_saved_beside_vocab_and_loadable_by_tokenizers(tmp_path):
    tok = Tokenizer(_vocab("bert"), TokenizerConfig(seq_len=10, keep="end", mode="bert"))
    tok.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"vocab.txt", "tokenizer.json", "tokenizer_settings.json"}
    hf = load_hf_tokenizer(tmp_path)
    assert hf.encode("the film is good").ids == tok.encode(["the film is good"])[0].tolist()
    assert hf.encode("x").ids[:3] == [tok.vocabulary.index(CLS), tok.vocabulary.index("x"), tok.vocabulary.index(SEP)]
    back = Tokenizer.load(tmp_path)
    assert back.vocabulary == tok.vocabulary and back.config == tok.config


def test_directory_with_settings_in_tokenizer_json_still_loads(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(_vocab("wordpiece")) + "\n")
    (tmp_path / "tokenizer.json").write_text(json.dumps({"seq_len": 7, "keep": "end", "lowercase": True,
                                                         "strip_accents": True, "mode": "wordpiece"}))
    tok = Tokenizer.load(tmp_path)
    assert tok.seq_len == 7 and tok.config.keep == "end"


def test_hugging_face_file_without_settings_is_named(tmp_path):
    Tokenizer(_vocab("wordpiece")).save(tmp_path)
    (tmp_path / "tokenizer_settings.json").unlink()
    with pytest.raises(ModelError, match="missing tokenizer_settings.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(ModelError, match="tokenizer.json: not a Hugging Face tokenizer.json"):
        load_hf_tokenizer(tmp_path)


# -- real data -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_texts():
    from rmcompress.data.loaders import load_data

    sst = load_data(shared_data("sst2/train.tsv"), "pointwise").texts
    hh = load_data(shared_data("hh-rlhf-harmless/pairs.jsonl.gz"), "pairwise")
    return list(sst), list(hh.chosen) + list(hh.rejected)


@pytest.fixture(scope="module")
def real_vocab(real_texts):
    sst, hh = real_texts
    return Tokenizer.train(sst[:3000] + hh[:200], vocab_size=2000).vocabulary


@pytest.mark.realdata
@pytest.mark.parametrize("corpus, mode, keep", [("sst2", "wordpiece", "start"), ("hh", "wordpiece", "end"),
                                                ("hh", "bert", "end"), ("hh", "bert", "start")])
def test_same_ids_on_every_real_text(real_texts, real_vocab, corpus, mode, keep):
    texts = real_texts[0] if corpus == "sst2" else real_texts[1]
    vocab = real_vocab if mode == "wordpiece" else [PAD, UNK, CLS, SEP] + real_vocab[2:]
    tok = Tokenizer(vocab, TokenizerConfig(seq_len=64, keep=keep, mode=mode))
    ours = tok.encode(texts)
    theirs = _hf_ids(tok, texts)
    differ = np.flatnonzero((ours != theirs).any(axis=1))
    assert differ.size == 0, f"{differ.size} of {len(texts)} texts differ, first: {texts[differ[0]][:200]!r}"
    assert len(texts) in (67349, 3700)
