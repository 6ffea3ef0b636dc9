"""Rewards per text of any artifact: the reference an app checks its own scoring against.

Contract: a pointwise artifact gives one row per non-empty text, ``{"text", "reward"}``; a
pairwise one gives one row per usable pair, ``{"chosen", "rejected", "reward_chosen",
"reward_rejected", "margin"}`` with ``margin = reward_chosen - reward_rejected`` (texts as scored:
the prompt joined in front, long texts cut as the loader cuts them). Texts are tokenised with the
artifact's own tokeniser and scored by the artifact itself (Keras, SavedModel or TFLite).
"""
from __future__ import annotations

import numpy as np

from rmcompress.data.loaders import PairwiseData


def reward_rows(art, data) -> list[dict]:
    """Rows of the module docstring for ``data`` (a list of texts, or :class:`PairwiseData`)
    scored by the opened artifact ``art`` (:func:`rmcompress.evaluation.artifacts.open_artifact`)."""
    tok = art.tokenizer
    if isinstance(data, PairwiseData):
        chosen = _rewards(art, tok.encode(data.chosen))
        rejected = _rewards(art, tok.encode(data.rejected))
        return [{"chosen": c, "rejected": r, "reward_chosen": rc, "reward_rejected": rr, "margin": rc - rr}
                for c, r, rc, rr in zip(data.chosen, data.rejected, chosen.tolist(), rejected.tolist())]
    texts = list(data)
    return [{"text": t, "reward": r} for t, r in zip(texts, _rewards(art, tok.encode(texts)).tolist())]


def _rewards(art, ids: np.ndarray) -> np.ndarray:
    return np.asarray(art.score(ids), np.float64).reshape(-1)
