"""Load and validate reward-model data: pointwise (text -> label/score) or pairwise (chosen/rejected).

Contracts
- Pointwise: a text column and a label column, auto-detected from :data:`TEXT_COLUMNS` and
  :data:`LABEL_COLUMNS` (or named by the caller). Labels that are all 0/1 (or booleans) make a
  *binary* task trained with binary cross-entropy on the reward logit; other numbers make a *real*
  task trained with MSE or MAE.
- Pairwise: ``chosen`` and ``rejected`` (Anthropic HH-RLHF), or ``prompt``, ``chosen``,
  ``rejected`` (TRL's format; the prompt is prepended to both). An optional numeric ``margin``
  column is the per-pair margin of the loss ``-log sigmoid(r_c - r_r - margin)``.
- Rows with empty/whitespace-only text and pairs whose chosen equals rejected are skipped and
  counted (``skipped``); if nothing is left, :class:`DataError`. NaN or non-numeric labels are
  errors naming the file and line. Texts longer than ``max_chars`` characters are cut (keeping the
  start for pointwise, the end for pairwise) so a megabyte text cannot exhaust memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rmcompress.data.formats import LINE_COLUMN, read_table
from rmcompress.errors import DataError

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "input", "comment", "utterance")
LABEL_COLUMNS = ("label", "labels", "score", "reward", "rating", "target", "y")
PAIR_COLUMNS = ("chosen", "rejected")
MAX_CHARS = 20_000
from rmcompress.choices import TASKS


@dataclass
class PointwiseData:
    """Texts with a label per text. ``label_kind`` is ``"binary"`` (0/1) or ``"real"``."""

    texts: list[str]
    labels: np.ndarray
    label_kind: str
    source: str = ""
    skipped: dict = field(default_factory=dict)
    task: str = "pointwise"

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> "PointwiseData":
        return PointwiseData([self.texts[i] for i in idx], self.labels[idx], self.label_kind,
                             self.source, dict(self.skipped))

    @property
    def all_texts(self) -> list[str]:
        return self.texts


@dataclass
class PairwiseData:
    """Preference pairs: ``chosen[i]`` should score above ``rejected[i]`` by ``margin[i]``."""

    chosen: list[str]
    rejected: list[str]
    margin: np.ndarray
    source: str = ""
    skipped: dict = field(default_factory=dict)
    task: str = "pairwise"

    def __len__(self) -> int:
        return len(self.chosen)

    def subset(self, idx: np.ndarray) -> "PairwiseData":
        return PairwiseData([self.chosen[i] for i in idx], [self.rejected[i] for i in idx],
                            self.margin[idx], self.source, dict(self.skipped))

    @property
    def all_texts(self) -> list[str]:
        return self.chosen + self.rejected


def _find_column(df: pd.DataFrame, wanted: str | None, candidates: tuple, what: str, src: str) -> str:
    cols = [c for c in df.columns if c != LINE_COLUMN]
    if wanted is not None:
        if wanted not in df.columns:
            raise DataError(f"{src}: no {what} column {wanted!r}; columns found: {cols}")
        return wanted
    lower = {str(c).lower(): c for c in cols}
    for name in candidates:
        if name in lower:
            return lower[name]
    raise DataError(
        f"{src}: cannot find a {what} column (tried {', '.join(candidates)}); columns found: {cols}"
        f"; name it with --{what}-column"
    )


def detect_task(df: pd.DataFrame) -> str | None:
    """``"pairwise"`` if the frame has chosen/rejected columns, ``"pointwise"`` if it has a text
    and a label column, else ``None``."""
    lower = {str(c).lower() for c in df.columns}
    if all(c in lower for c in PAIR_COLUMNS):
        return "pairwise"
    if any(c in lower for c in TEXT_COLUMNS) and any(c in lower for c in LABEL_COLUMNS):
        return "pointwise"
    return None


def _clean_text(value, src: str, line: int, keep: str, max_chars: int) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        if isinstance(value, (int, float, bool, np.number)):
            value = str(value)
        else:
            raise DataError(f"{src}:{line}: text is a {type(value).__name__}, expected a string")
    if not value.strip():
        return None
    if len(value) > max_chars:
        value = value[-max_chars:] if keep == "end" else value[:max_chars]
    return value


def _numeric(value, src: str, line: int, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        v = value.strip()
        if v.lower() in ("true", "false"):
            return 1.0 if v.lower() == "true" else 0.0
        try:
            x = float(v)
        except ValueError:
            raise DataError(f"{src}:{line}: {what} {value[:40]!r} is not a number") from None
    elif isinstance(value, (int, float, np.number)):
        x = float(value)
    elif value is None:
        x = float("nan")
    else:
        raise DataError(f"{src}:{line}: {what} is a {type(value).__name__}, expected a number")
    if not math.isfinite(x):
        raise DataError(f"{src}:{line}: {what} is missing or not finite ({value!r})")
    return x


def _mismatch(df: pd.DataFrame, task: str, src: str) -> None:
    found = detect_task(df)
    if found is not None and found != task:
        cols = [c for c in df.columns if c != LINE_COLUMN]
        raise DataError(f"{src}: this looks like {found} data (columns {cols}); use --task {found}")


def load_pointwise(path, text_column: str | None = None, label_column: str | None = None,
                   label_kind: str | None = None, max_chars: int = MAX_CHARS) -> PointwiseData:
    """Load a pointwise file (see module docstring). ``label_kind`` forces ``binary``/``real``;
    with ``binary``, labels outside {0, 1} are errors naming the line."""
    df = read_table(path)
    src = str(path)
    if text_column is None and label_column is None:
        _mismatch(df, "pointwise", src)
    tcol = _find_column(df, text_column, TEXT_COLUMNS, "text", src)
    lcol = _find_column(df, label_column, LABEL_COLUMNS, "label", src)
    texts, labels, empty = [], [], 0
    for t, y, line in zip(df[tcol].tolist(), df[lcol].tolist(), df[LINE_COLUMN].tolist()):
        text = _clean_text(t, src, line, "start", max_chars)
        if text is None:
            empty += 1
            continue
        texts.append(text)
        labels.append((_numeric(y, src, line, "label"), line))
    if not texts:
        raise DataError(f"{src}: all {empty} texts are empty")
    values = np.array([v for v, _ in labels], dtype=np.float32)
    is_binary = bool(np.all((values == 0) | (values == 1)))
    if label_kind is None:
        label_kind = "binary" if is_binary else "real"
    if label_kind == "binary" and not is_binary:
        bad = next(line for v, line in labels if v not in (0.0, 1.0))
        value = next(v for v, line in labels if v not in (0.0, 1.0))
        raise DataError(f"{src}:{bad}: label {value:g} is out of range for a binary task (0 or 1)")
    if label_kind not in ("binary", "real"):
        raise DataError(f"label kind {label_kind!r} unknown; allowed: binary, real")
    return PointwiseData(texts, values, label_kind, src, {"empty_text": empty} if empty else {})


def _join_prompt(prompt: str | None, response: str) -> str:
    if not prompt:
        return response
    if prompt[-1:].isspace() or response[:1].isspace():
        return prompt + response
    return prompt + "\n" + response


def load_pairwise(path, max_chars: int = MAX_CHARS) -> PairwiseData:
    """Load a pairwise file (see module docstring)."""
    df = read_table(path)
    src = str(path)
    _mismatch(df, "pairwise", src)
    lower = {str(c).lower(): c for c in df.columns}
    missing = [c for c in PAIR_COLUMNS if c not in lower]
    if missing:
        cols = [c for c in df.columns if c != LINE_COLUMN]
        raise DataError(f"{src}: pairwise data needs columns chosen and rejected; missing {missing}; "
                        f"columns found: {cols}")
    prompts = df[lower["prompt"]].tolist() if "prompt" in lower else [None] * len(df)
    margins = df[lower["margin"]].tolist() if "margin" in lower else [0.0] * len(df)
    chosen, rejected, margin = [], [], []
    empty = same = 0
    rows = zip(prompts, df[lower["chosen"]].tolist(), df[lower["rejected"]].tolist(), margins,
               df[LINE_COLUMN].tolist())
    for p, c, r, m, line in rows:
        prompt = _clean_text(p, src, line, "end", max_chars) if p is not None else None
        c = _clean_text(c, src, line, "end", max_chars)
        r = _clean_text(r, src, line, "end", max_chars)
        if c is None or r is None:
            empty += 1
            continue
        if c == r:
            same += 1
            continue
        chosen.append(_clean_text(_join_prompt(prompt, c), src, line, "end", max_chars))
        rejected.append(_clean_text(_join_prompt(prompt, r), src, line, "end", max_chars))
        margin.append(_numeric(m, src, line, "margin"))
    skipped = {k: v for k, v in (("empty_text", empty), ("chosen_equals_rejected", same)) if v}
    if not chosen:
        raise DataError(f"{src}: no usable pairs ({empty} with empty text, {same} with chosen == rejected)")
    return PairwiseData(chosen, rejected, np.asarray(margin, np.float32), src, skipped)


def load_data(path, task: str, **kwargs) -> PointwiseData | PairwiseData:
    """Load ``path`` for ``task`` (``pointwise`` or ``pairwise``); keyword args go to the loader."""
    if task == "pointwise":
        return load_pointwise(path, **kwargs)
    if task == "pairwise":
        kwargs = {k: v for k, v in kwargs.items() if k == "max_chars"}
        return load_pairwise(path, **kwargs)
    raise DataError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")


def infer_task(path) -> str:
    """Guess the task of a data file from its columns (used by ``evaluate`` when no model says)."""
    task = detect_task(read_table(path))
    if task is None:
        raise DataError(f"{path}: cannot tell the task from its columns; pass --task")
    return task


def load_texts(path, text_column: str | None = None, max_chars: int = MAX_CHARS) -> list[str]:
    """Unlabeled texts (for distillation): the text column of a table; any label column is ignored.
    Empty texts are skipped; none left is a :class:`DataError`."""
    df = read_table(path)
    src = str(path)
    tcol = _find_column(df, text_column, TEXT_COLUMNS, "text", src)
    texts = [t for t in (_clean_text(v, src, line, "start", max_chars)
                         for v, line in zip(df[tcol].tolist(), df[LINE_COLUMN].tolist())) if t is not None]
    if not texts:
        raise DataError(f"{src}: no non-empty texts in column {tcol!r}")
    return texts
