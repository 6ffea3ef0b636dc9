"""WordPiece tokenizer: training, round trip, truncation sides, save/load."""
import numpy as np
import pytest

from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
from rmcompress.errors import ModelError

TEXTS = ["the movie was wonderful", "the plot was dull and boring", "a wonderful cast", "boring ending"] * 5


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(TEXTS, vocab_size=60, config=TokenizerConfig(seq_len=8))


def test_reserved_ids_and_round_trip(tok):
    assert tok.vocabulary[:2] == ["[PAD]", "[UNK]"]
    ids = tok.encode(["The movie was WONDERFUL", "the movie"])
    assert ids.shape == (2, 8) and ids.dtype == np.int32
    assert tok.decode(ids[0]) == "the movie was wonderful"
    assert tok.decode(ids[1]) == "the movie"
    n = int((ids[1] != 0).sum())
    assert n >= 2 and (ids[1][:n] != 0).all() and (ids[1][n:] == 0).all()  # padded at the end


def test_truncation_keeps_start_or_end(tok):
    text = "the movie was dull and boring the plot was wonderful"
    start = tok.encode([text])[0]
    end = Tokenizer(tok.vocabulary, TokenizerConfig(seq_len=8, keep="end")).encode([text])[0]
    assert tok.decode(start).startswith("the movie was")
    assert tok.decode(end).endswith("plot was wonderful")
    assert (start != 0).all() and (end != 0).all()


def test_unknown_words_map_to_unk(tok):
    ids = tok.encode(["zzzqqq"])[0]
    assert 1 in ids


def test_save_load_identical(tok, tmp_path):
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.vocabulary == tok.vocabulary and again.config == tok.config
    np.testing.assert_array_equal(again.encode(TEXTS), tok.encode(TEXTS))


def test_load_missing_files_names_them(tmp_path):
    with pytest.raises(ModelError, match="missing vocab.txt"):
        Tokenizer.load(tmp_path)
