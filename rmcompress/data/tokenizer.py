"""WordPiece tokenisation (keras-nlp) to fixed-length int32 token-id matrices.

Contract: id 0 is ``[PAD]`` and id 1 is ``[UNK]``; every text becomes exactly ``seq_len`` ids,
padded with 0 at the end. Texts longer than ``seq_len`` tokens are truncated keeping the
``"start"`` (pointwise default) or the ``"end"`` (pairwise default: the final assistant turn decides).
Saved as ``vocab.txt`` (one token a line), ``tokenizer_settings.json`` (lowercase, strip_accents,
seq_len, keep, mode: what :meth:`Tokenizer.load` reads) and ``tokenizer.json``, the same tokenizer in
Hugging Face ``tokenizers`` format for apps (:mod:`rmcompress.data.hf_tokenizer`). A directory
written before the settings file had its name holds the settings in ``tokenizer.json``; ``load``
reads them there when ``tokenizer_settings.json`` is absent. keras-nlp is Keras 3; its tokenizer is
used only as a tf.data/tf.function op.

``mode="bert"``: a pretrained backbone's own WordPiece vocabulary (``[PAD]`` must be id 0;
``[UNK]``, ``[CLS]``, ``[SEP]`` anywhere, e.g. 100/101/102 in BERT's). Each text becomes
``[CLS] w_1 .. w_k [SEP]`` with ``k <= seq_len - 2`` wordpieces (truncated on the ``keep`` side,
so a long pairwise text keeps its end), padded with 0; unknown words map to ``[UNK]``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rmcompress._keras import tf
from rmcompress.errors import ModelError, UsageError
from rmcompress.fileio import atomic_write_text, read_json, write_json
from rmcompress.data.hf_tokenizer import HF_TOKENIZER_FILE, save_hf_tokenizer

VOCAB_FILE = "vocab.txt"
SETTINGS_FILE = "tokenizer_settings.json"
PAD, UNK = "[PAD]", "[UNK]"
CLS, SEP = "[CLS]", "[SEP]"
RESERVED = [PAD, UNK]
from rmcompress.config.choices import KEEP_SIDES, TOKENIZER_MODES


@dataclass
class TokenizerConfig:
    seq_len: int = 64
    keep: str = "start"
    lowercase: bool = True
    strip_accents: bool = True
    mode: str = "wordpiece"  # "bert": pretrained vocabulary, [CLS] text [SEP] (module docstring)

    def __post_init__(self):
        if self.keep not in KEEP_SIDES:
            raise UsageError(f"truncation side {self.keep!r} unknown; allowed: {', '.join(KEEP_SIDES)}")
        if self.mode not in TOKENIZER_MODES:
            raise UsageError(f"tokenizer mode {self.mode!r} unknown; allowed: {', '.join(TOKENIZER_MODES)}")
        if int(self.seq_len) < (3 if self.mode == "bert" else 1):
            raise UsageError(f"sequence length {self.seq_len} must be >= {3 if self.mode == 'bert' else 1}")


class Tokenizer:
    """A trained WordPiece vocabulary plus the fixed-length encoding rules of one model."""

    def __init__(self, vocabulary: Sequence[str], config: TokenizerConfig | None = None):
        vocabulary = list(vocabulary)
        self.config = config or TokenizerConfig()
        if self.config.mode == "bert":
            missing = [t for t in (UNK, CLS, SEP) if t not in vocabulary]
            if vocabulary[:1] != [PAD] or missing:
                raise ModelError(f"bert vocabulary needs {PAD} at id 0 and {UNK}, {CLS}, {SEP}; "
                                 f"id 0 is {vocabulary[:1]}, missing {missing}")
        elif vocabulary[:2] != RESERVED:
            raise ModelError(f"vocabulary must start with {RESERVED}, starts with {vocabulary[:2]}")
        self.vocabulary = vocabulary
        self._layer = None

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, config: TokenizerConfig | None = None,
              ) -> "Tokenizer":
        """Learn a WordPiece vocabulary of at most ``vocab_size`` tokens from ``texts``."""
        import keras_nlp

        config = config or TokenizerConfig()
        if config.mode != "wordpiece":
            raise UsageError(f"a {config.mode} tokenizer uses its backbone's vocabulary; it is not trained")
        if vocab_size < len(RESERVED) + 1:
            raise UsageError(f"vocabulary size {vocab_size} too small (need >= {len(RESERVED) + 1})")
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string)).batch(1024)
        vocab = keras_nlp.tokenizers.compute_word_piece_vocabulary(
            ds, vocabulary_size=vocab_size, lowercase=config.lowercase,
            strip_accents=config.strip_accents, reserved_tokens=RESERVED)
        return cls(vocab, config)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        d = Path(directory)
        vocab_path = d / VOCAB_FILE
        if not vocab_path.is_file():
            raise ModelError(f"{d}: missing {VOCAB_FILE} (the tokeniser is saved beside the model)")
        cfg_path, settings = find_settings(d)
        try:
            with open(vocab_path, encoding="utf-8", newline="") as f:  # tokens are split on \n only
                vocab = f.read().split("\n")
        except (OSError, UnicodeDecodeError) as e:
            raise ModelError(f"{vocab_path}: unreadable vocabulary ({e})") from None
        if vocab and vocab[-1] == "":
            vocab = vocab[:-1]
        try:
            if settings is None:
                settings = read_json(cfg_path)
            if not isinstance(settings, dict):
                raise ValueError("expected a JSON object")
            cfg = TokenizerConfig(**settings)
            int(cfg.seq_len)
        except (TypeError, ValueError, OSError, UsageError) as e:
            raise ModelError(f"{cfg_path}: invalid tokenizer settings ({str(e).splitlines()[0][:200]})") from None
        try:
            return cls(vocab, cfg)
        except ModelError as e:
            raise ModelError(f"{vocab_path}: {e}") from None

    def save(self, directory: str | os.PathLike) -> None:
        """``vocab.txt``, ``tokenizer_settings.json`` and the Hugging Face ``tokenizer.json``."""
        d = Path(directory)
        atomic_write_text(d / VOCAB_FILE, "\n".join(self.vocabulary) + "\n")
        write_json(d / SETTINGS_FILE, asdict(self.config))
        save_hf_tokenizer(self, d)

    # -- encoding ---------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def seq_len(self) -> int:
        return int(self.config.seq_len)

    @property
    def mode(self) -> str:
        return self.config.mode

    def special_ids(self) -> dict:
        """Ids an edge app needs to reproduce the encoding: ``pad``, ``unk`` (+ ``cls``, ``sep``)."""
        names = {"pad": PAD, "unk": UNK}
        if self.mode == "bert":
            names.update(cls=CLS, sep=SEP)
        return {k: self.vocabulary.index(v) for k, v in names.items()}

    @property
    def layer(self):
        """The keras-nlp ``WordPieceTokenizer`` (ragged output); built on first use."""
        if self._layer is None:
            import keras_nlp

            with tf.init_scope():  # eager even when first touched inside a tf.function
                self._layer = keras_nlp.tokenizers.WordPieceTokenizer(
                    vocabulary=self.vocabulary, lowercase=self.config.lowercase,
                    strip_accents=self.config.strip_accents, oov_token=UNK, dtype="int32")
        return self._layer

    def tokenize_tf(self, texts: tf.Tensor) -> tf.Tensor:
        """Graph-friendly: a 1-D string tensor -> ``[batch, seq_len]`` int32 ids (tf.data safe)."""
        ragged = self.layer.tokenize(texts)
        if not isinstance(ragged, tf.RaggedTensor):
            ragged = tf.RaggedTensor.from_tensor(ragged)
        ragged = tf.cast(ragged, tf.int32)
        n = self.seq_len
        bert = self.mode == "bert"
        k = n - 2 if bert else n
        if self.config.keep == "end":
            ragged = ragged[:, -k:]
        else:
            ragged = ragged[:, :k]
        if bert:
            ids = self.special_ids()
            column = tf.ones(tf.stack([ragged.nrows(), 1]), tf.int32)
            ragged = tf.concat([tf.RaggedTensor.from_tensor(column * ids["cls"]), ragged,
                                tf.RaggedTensor.from_tensor(column * ids["sep"])], axis=1)
        return ragged.to_tensor(default_value=0, shape=[None, n])

    def encode(self, texts: Sequence[str], batch_size: int = 2048) -> np.ndarray:
        """Encode a list of strings into an ``[n, seq_len]`` int32 numpy array."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.seq_len), np.int32)
        out = []
        fn = tf.function(self.tokenize_tf, input_signature=[tf.TensorSpec([None], tf.string)])
        for i in range(0, len(texts), batch_size):
            out.append(fn(tf.constant(texts[i:i + batch_size])).numpy())
        return np.concatenate(out, axis=0)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text with WordPiece ``##`` continuations joined (padding dropped)."""
        words: list[str] = []
        for i in ids:
            i = int(i)
            if i == 0:
                continue
            tok = self.vocabulary[i] if 0 <= i < len(self.vocabulary) else UNK
            if tok.startswith("##") and words:
                words[-1] += tok[2:]
            else:
                words.append(tok)
        return " ".join(words)


def find_settings(d: Path) -> tuple[Path, object]:
    """``(path, parsed or None)`` of a directory's tokenizer settings: ``tokenizer_settings.json``,
    else a ``tokenizer.json`` that holds the settings (not a Hugging Face tokenizer)."""
    path = d / SETTINGS_FILE
    if path.is_file():
        return path, None
    legacy = d / HF_TOKENIZER_FILE
    if legacy.is_file():
        try:
            settings = read_json(legacy)
        except (ValueError, OSError) as e:
            raise ModelError(f"{legacy}: invalid tokenizer settings ({str(e).splitlines()[0][:200]})") from None
        if not (isinstance(settings, dict) and "model" in settings):
            return legacy, settings
    raise ModelError(f"{d}: missing {SETTINGS_FILE} (the tokeniser is saved beside the model)")
