"""The embedded demo data sets, generated from a seed (no download, no files in the repo).

Pointwise (``sentence``, ``label``): short movie-review-like sentences whose sentiment comes from
adjectives and verbs, flipped by negation ("not", "never") and weakened by "but" clauses, with
``noise`` of the labels flipped at random, so the task is learnable but not trivial.

Pairwise (``prompt``, ``chosen``, ``rejected``; TRL's format): a user question and two assistant
replies; the chosen one answers helpfully and politely, the rejected one is dismissive, rude or
off-topic. Lengths overlap, so "pick the longer/shorter reply" is not a solution.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from rmcompress.fileio import atomic_write_text

POS_ADJ = ["good", "great", "wonderful", "brilliant", "charming", "moving", "funny", "smart", "delightful",
           "gripping", "beautiful", "fresh", "touching", "clever", "superb", "warm"]
NEG_ADJ = ["bad", "dull", "boring", "awful", "tedious", "clumsy", "flat", "lifeless", "messy", "stale",
           "predictable", "weak", "silly", "painful", "forgettable", "shallow"]
POS_VERB = {"loved": "love", "enjoyed": "enjoy", "admired": "admire", "adored": "adore", "liked": "like"}
NEG_VERB = {"hated": "hate", "disliked": "dislike", "regretted": "regret", "resented": "resent",
            "loathed": "loathe"}
NOUNS = ["film", "movie", "story", "script", "cast", "ending", "plot", "performance", "soundtrack",
         "director", "dialogue", "pacing", "premise", "camera work", "lead actor"]
ADVERBS = ["really", "truly", "quite", "rather", "surprisingly", "utterly", "mostly", "simply"]
FILLER = ["the", "this", "that", "its", "our"]


def _sentence(rng: np.random.RandomState) -> tuple[str, int]:
    pos = rng.rand() < 0.5
    adj = rng.choice(POS_ADJ if pos else NEG_ADJ)
    noun = rng.choice(NOUNS)
    form = rng.randint(5)
    negate = rng.rand() < 0.2
    neg = "not " if negate else ""
    label = int(pos) ^ int(negate)
    if form == 0:
        s = f"{rng.choice(FILLER)} {noun} is {neg}{rng.choice(ADVERBS)} {adj}"
    elif form == 1:
        verbs = POS_VERB if pos else NEG_VERB
        past = rng.choice(list(verbs))
        s = f"i did not {verbs[past]} {rng.choice(FILLER)} {noun}" if negate else f"i {past} {rng.choice(FILLER)} {noun}"
    elif form == 2:  # "never" + an adjective of the other polarity agrees with the first one
        label = int(pos)
        second = rng.choice((NEG_ADJ if pos else POS_ADJ) if negate else (POS_ADJ if pos else NEG_ADJ))
        s = f"a {adj} {noun} , {'never' if negate else 'always'} {second}"
    elif form == 3:  # the clause after "but" decides
        other = rng.choice(NEG_ADJ if pos else POS_ADJ)
        s = f"{rng.choice(FILLER)} {rng.choice(NOUNS)} is {other} but the {noun} is {neg}{adj}"
    else:
        s = f"{neg}{rng.choice(ADVERBS)} {adj} {noun}"
    return s, label


def pointwise_frame(n: int = 3000, seed: int = 0, noise: float = 0.05) -> pd.DataFrame:
    """``n`` rows of ``sentence``/``label`` (see module docstring)."""
    rng = np.random.RandomState(seed)
    rows = [_sentence(rng) for _ in range(n)]
    labels = np.array([y for _, y in rows])
    flip = rng.rand(n) < noise
    labels[flip] = 1 - labels[flip]
    return pd.DataFrame({"sentence": [s for s, _ in rows], "label": labels})


TOPICS = ["bake bread", "fix a flat tyre", "learn python", "plant tomatoes", "write a cover letter",
          "train for a marathon", "save money", "clean a laptop keyboard", "start a podcast", "sleep better"]
HELPFUL = ["sure : start small and {t} step by step .",
           "sure , here is a simple way to {t} : start small , follow the steps and check each one .",
           "good question ! to {t} , first gather what you need , then go step by step .",
           "happy to help . the usual way to {t} is to plan it , practise , and ask if you get stuck .",
           "of course . many people {t} by breaking it into small steps ; i can list them if you like ."]
UNHELPFUL = ["why would you even want to {t} ? figure it out yourself , it is not my job to explain "
             "every little thing to people who cannot be bothered to search for it first .",
             "why would you even want to {t} ? figure it out yourself .",
             "no . that is a stupid question .",
             "i do not care about that . anyway , did you see the game last night ?",
             "whatever . {t} is pointless and you will fail at it anyway , honestly ."]


def pairwise_frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of ``prompt``/``chosen``/``rejected`` (see module docstring)."""
    rng = np.random.RandomState(seed)
    rows = []
    for _ in range(n):
        t = rng.choice(TOPICS)
        prompt = f"Human: how do i {t} ?\n\nAssistant: "
        rows.append({"prompt": prompt, "chosen": rng.choice(HELPFUL).format(t=t),
                     "rejected": rng.choice(UNHELPFUL).format(t=t)})
    return pd.DataFrame(rows)


def write_demo_data(directory, seed: int = 0) -> dict:
    """Write ``sentiment.tsv`` and ``preferences.jsonl`` into ``directory``; return their paths."""
    from pathlib import Path


    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    point = d / "sentiment.tsv"
    pair = d / "preferences.jsonl"
    atomic_write_text(point, pointwise_frame(seed=seed).to_csv(sep="\t", index=False))
    atomic_write_text(pair, pairwise_frame(seed=seed).to_json(orient="records", lines=True))
    return {"pointwise": point, "pairwise": pair}
