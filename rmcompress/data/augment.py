"""Word-replacement augmentation: new texts for a teacher to score (distillation data).

A distilled student learns the teacher's function only where it sees the teacher's scores. When the
labelled texts are few or short (SST-2's training file is mostly sub-phrases, its evaluation texts
full sentences), variants of the longer texts, scored by the teacher, give it more of that function
near the texts that matter (the augmentation of TinyBERT, Jiao et al. 2020, with embedding
neighbours in place of a masked-LM).

Contract:

- :func:`neighbour_table`: for every *whole-word* token of a vocabulary (letters only, at least
  ``min_chars`` long, not a ``##`` continuation or a ``[special]`` token), its ``k`` nearest
  whole-word tokens by cosine similarity of the model's input embeddings (the row itself excluded).
  Nearest neighbours of sentiment words are often their antonyms ("good" -> "bad"); that is wanted:
  the teacher scores every variant, so a flipped variant is a new, informative example.
- :func:`augment_texts`: for every text with at least ``min_words`` whitespace-separated words,
  ``copies`` variants; each word found in the table (lower-cased) is replaced, with probability
  ``p``, by one of its neighbours drawn uniformly; other words are kept. Variants equal to their
  source are dropped, so the count can be below ``copies`` per text. Deterministic for a ``seed``.
- :func:`token_vectors`: the input embedding of every vocabulary row of a suite model (its
  ``token_embedding`` layer called on ``0..V-1``, so a factorised table works too).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rmcompress._keras import tf
from rmcompress.errors import UsageError


def token_vectors(model, vocabulary_size: int) -> np.ndarray:
    """``[V, d]`` input embeddings of a suite model (layer ``token_embedding``)."""

    try:
        layer = model.get_layer("token_embedding")
    except ValueError:
        raise UsageError(f"augmentation needs the model's input embedding, but model {model.name!r} has no "
                         "layer 'token_embedding'") from None
    ids = tf.range(vocabulary_size, dtype=tf.int32)[None, :]
    return np.asarray(layer(ids))[0]


def _whole_words(vocabulary: Sequence[str], min_chars: int) -> np.ndarray:
    return np.asarray([i for i, w in enumerate(vocabulary) if len(w) >= min_chars and w.isalpha()], dtype=np.int64)


def neighbour_table(vectors: np.ndarray, vocabulary: Sequence[str], k: int = 8, min_chars: int = 3,
                    chunk: int = 2048) -> dict[str, list[str]]:
    """``{word: [k nearest whole words]}`` by cosine similarity of ``vectors`` (rows of ``vocabulary``)."""
    if len(vectors) != len(vocabulary):
        raise UsageError(f"{len(vectors)} embedding rows for a vocabulary of {len(vocabulary)}")
    rows = _whole_words(vocabulary, min_chars)
    if len(rows) <= k:
        raise UsageError(f"augmentation needs more than k={k} whole-word tokens in the vocabulary; "
                         f"it has {len(rows)}")
    v = np.asarray(vectors, dtype=np.float32)[rows]
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    table = {}
    for start in range(0, len(rows), chunk):
        sim = v[start:start + chunk] @ v.T
        sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.take_along_axis(sim, top, axis=1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(top, order, axis=1)
        for r, nn in enumerate(top):
            table[vocabulary[rows[start + r]]] = [vocabulary[rows[j]] for j in nn]
    return table


def augment_texts(texts: Sequence[str], table: dict[str, list[str]], copies: int = 4, p: float = 0.3,
                  min_words: int = 10, seed: int = 0) -> list[str]:
    """Variants of every text with ``>= min_words`` words (see the module docstring)."""
    if copies < 1:
        raise UsageError(f"augmentation copies must be >= 1, got {copies}")
    if not 0.0 < p <= 1.0:
        raise UsageError(f"augmentation replacement probability must be in (0, 1], got {p}")
    rng = np.random.RandomState(seed)
    out = []
    for text in texts:
        words = str(text).split()
        if len(words) < min_words:
            continue
        seen = {" ".join(words)}
        for _ in range(copies):
            new = []
            for w in words:
                nn = table.get(w.lower())
                new.append(nn[rng.randint(len(nn))] if nn and rng.rand() < p else w)
            variant = " ".join(new)
            if variant not in seen:
                seen.add(variant)
                out.append(variant)
    return out
