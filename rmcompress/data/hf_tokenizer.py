"""The project's tokenizer as a Hugging Face ``tokenizers`` pipeline (``tokenizer.json``).

Contract: for every text, ``hf_tokenizer(tok).encode(text).ids == tok.encode([text])[0]`` (the
same ids, the same ``seq_len``, the same truncation side, ``[CLS] .. [SEP]`` in ``bert`` mode), so
an app loads one ``tokenizer.json`` through any ``tokenizers`` binding (Python, Rust, JS, Swift,
Android) instead of re-implementing WordPiece. The pipeline mirrors keras-nlp's
``WordPieceTokenizer`` step by step:

1. normaliser: CJK ideographs get a space either side; with ``strip_accents``: NFD, then every
   non-spacing mark (``\\p{Mn}``) goes; with ``lowercase``: NFKC then lowercase (keras-nlp's
   NFKC case folding);
2. pre-tokeniser: words split on ``[\\t\\n\\f\\r ]`` and control/format characters
   (``\\p{Cc}``, ``\\p{Cf}``), which go, and on punctuation (ASCII punctuation and ``\\p{P}``) and
   CJK ideographs, which stay as words of their own;
3. WordPiece with the vocabulary, ``[UNK]`` and the ``##`` continuation prefix; a word longer
   than 100 characters is ``[UNK]``;
4. truncation to ``seq_len`` ids (``bert``: ``seq_len - 2`` wordpieces) keeping the start
   (``keep="start"``) or the end (``keep="end"``), ``[CLS] .. [SEP]`` around them in ``bert`` mode,
   padding with ``[PAD]`` (id 0) at the end to exactly ``seq_len``.

Known limits of the mirror (a scan of every code point below U+30000 between two letters: about
1,150 of ~196,000 split differently, none on SST-2 or HH-RLHF, tested): keras-nlp case-folds each
word after splitting while a Hugging Face normaliser runs before it, so a character whose NFKC
form holds punctuation or a space (``…`` -> ``...``, ``⑴`` -> ``(1)``, a no-break space, spacing
accents such as ``´``) splits differently; full case folding (``ß`` -> ``ss``, final ``ς`` -> ``σ``,
Cherokee) is lowercasing here; the 100 limit counts bytes in keras-nlp and characters here.
"""
from __future__ import annotations

import os
from pathlib import Path

from rmcompress.errors import ModelError
from rmcompress.fileio import atomic_write_text

HF_TOKENIZER_FILE = "tokenizer.json"

_CJK = ("\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{20000}-\\x{2A6DF}\\x{2A700}-\\x{2B73F}"
        "\\x{2B740}-\\x{2B81F}\\x{2B820}-\\x{2CEAF}\\x{F900}-\\x{FAFF}\\x{2F800}-\\x{2FA1F}")
_DELIMITERS = r"[\t\n\f\r ]|\p{Cc}|\p{Cf}"
_KEPT = r"[!-/]|[:-@]|[\[-`]|[{-~]|\p{P}|[" + _CJK + "]"
MAX_CHARS_PER_WORD = 100


def hf_tokenizer(tok):
    """A ``tokenizers.Tokenizer`` giving the ids of the project's :class:`Tokenizer` ``tok``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    cfg = tok.config
    vocab = {t: i for i, t in enumerate(tok.vocabulary)}
    special = tok.special_ids()
    hf = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                    max_input_chars_per_word=MAX_CHARS_PER_WORD))
    steps = [normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False,
                                        lowercase=False)]  # spaces around CJK ideographs only
    if cfg.strip_accents:
        steps += [normalizers.NFD(), normalizers.Replace(Regex(r"\p{Mn}"), "")]
    if cfg.lowercase:
        steps += [normalizers.NFKC(), normalizers.Lowercase()]
    hf.normalizer = normalizers.Sequence(steps)
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_DELIMITERS), behavior="removed"),
        pre_tokenizers.Split(Regex(_KEPT), behavior="isolated")])
    hf.decoder = decoders.WordPiece(prefix="##")
    if tok.mode == "bert":
        cls, sep = tok.vocabulary[special["cls"]], tok.vocabulary[special["sep"]]
        hf.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", special_tokens=[(cls, special["cls"]), (sep, special["sep"])])
    hf.enable_truncation(tok.seq_len, direction="left" if cfg.keep == "end" else "right")
    hf.enable_padding(direction="right", pad_id=special["pad"], pad_token=tok.vocabulary[special["pad"]],
                      length=tok.seq_len)
    return hf


def save_hf_tokenizer(tok, directory: str | os.PathLike) -> Path:
    """Write ``DIR/tokenizer.json`` (Hugging Face format) atomically; returns its path."""
    path = Path(directory) / HF_TOKENIZER_FILE
    atomic_write_text(path, hf_tokenizer(tok).to_str(pretty=True))
    return path


def load_hf_tokenizer(directory: str | os.PathLike):
    """``tokenizers.Tokenizer`` from ``DIR/tokenizer.json``; :class:`ModelError` naming the file."""
    from tokenizers import Tokenizer

    path = Path(directory) / HF_TOKENIZER_FILE
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on a malformed file
        raise ModelError(f"{path}: not a Hugging Face tokenizer.json ({str(e).splitlines()[0][:200]})") from None
