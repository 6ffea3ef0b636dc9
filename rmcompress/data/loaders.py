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
  start for pointwise, the end for pairwise) so a megabyte text cannot exhaust memory; the number
  cut is ``truncated``. Labels and margins must be finite and within float32 range.
- Every problem is a :class:`DataError` naming the file (and line where there is one); no other
  exception escapes for any input bytes (``tests/data/test_fuzz_loaders.py``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rmcompress.data.formats import LINE_COLUMN, read_table
from rmcompress.data.split import check_split_sizes
from rmcompress.errors import DataError, UsageError

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "input", "comment", "utterance")
LABEL_COLUMNS = ("label", "labels", "score", "reward", "rating", "target", "y")
PAIR_COLUMNS = ("chosen", "rejected")
MAX_CHARS = 20_000
from rmcompress.config.choices import TASKS


@dataclass
class PointwiseData:
    """Texts with a label per text. ``label_kind`` is ``"binary"`` (0/1) or ``"real"``."""

    texts: list[str]
    labels: np.ndarray
    label_kind: str
    source: str = ""
    skipped: dict = field(default_factory=dict)
    task: str = "pointwise"
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> "PointwiseData":
        return PointwiseData([self.texts[i] for i in idx], self.labels[idx], self.label_kind,
                             self.source, dict(self.skipped), truncated=self.truncated)

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
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.chosen)

    def subset(self, idx: np.ndarray) -> "PairwiseData":
        return PairwiseData([self.chosen[i] for i in idx], [self.rejected[i] for i in idx],
                            self.margin[idx], self.source, dict(self.skipped), truncated=self.truncated)

    @property
    def all_texts(self) -> list[str]:
        return self.chosen + self.rejected


def _find_column(df: pd.DataFrame, wanted: str | None, candidates: tuple, what: str, src: str) -> str:
    cols = [c for c in df.columns if c != LINE_COLUMN]
    if wanted is not None:
        if wanted not in df.columns or wanted == LINE_COLUMN:
            raise DataError(f"{src}: no {what} column {wanted!r}; columns found: {cols}")
        return wanted
    lower: dict[str, list] = {}
    for c in cols:
        lower.setdefault(str(c).lower(), []).append(c)
    for name in candidates:
        if name in lower:
            if len(lower[name]) > 1:
                raise DataError(f"{src}: columns {lower[name]} differ only in case; name the {what} column "
                                f"with --{what}-column")
            return lower[name][0]
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


FLOAT32_MAX = float(np.finfo(np.float32).max)


class _Cleaner:
    """Per-file text and number checks; counts the texts it truncates."""

    def __init__(self, src: str, max_chars: int):
        if int(max_chars) < 1:
            raise DataError(f"max_chars {max_chars} must be >= 1")
        self.src, self.max_chars, self.truncated = src, int(max_chars), 0

    def text(self, value, line: int, keep: str, what: str = "text") -> str | None:
        """The text, cut to ``max_chars`` (keeping the ``keep`` side), or ``None`` when empty."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if not isinstance(value, str):
            if isinstance(value, (int, float, bool, np.number)):
                value = str(value)
            else:
                raise DataError(f"{self.src}:{line}: {what} is a {type(value).__name__}, expected a string")
        if not value.strip():
            return None
        if len(value) > self.max_chars:
            value = value[-self.max_chars:] if keep == "end" else value[:self.max_chars]
            self.truncated += 1
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate escaped in JSON ("\ud800")
            raise DataError(f"{self.src}:{line}: {what} holds invalid Unicode "
                            f"({value[e.start]!r} at character {e.start})") from None
        return value

    def number(self, value, line: int, what: str) -> float:
        """A finite float32-range number from a cell (bools and "true"/"false" are 1/0)."""
        src = self.src
        if isinstance(value, (bool, np.bool_)):
            return float(value)
        if isinstance(value, str):
            v = value.strip()
            if not v:
                raise DataError(f"{src}:{line}: {what} is missing")
            if v.lower() in ("true", "false"):
                return 1.0 if v.lower() == "true" else 0.0
            try:
                x = float(v)
            except ValueError:
                raise DataError(f"{src}:{line}: {what} {value[:40]!r} is not a number") from None
        elif isinstance(value, (int, float, np.number)):
            try:
                x = float(value)
            except OverflowError:
                raise DataError(f"{src}:{line}: {what} {str(value)[:40]}... is out of range") from None
        elif value is None:
            raise DataError(f"{src}:{line}: {what} is missing")
        else:
            raise DataError(f"{src}:{line}: {what} is a {type(value).__name__}, expected a number")
        if math.isnan(x):
            raise DataError(f"{src}:{line}: {what} is missing or NaN ({str(value)[:40]!r})")
        if not math.isfinite(x) or abs(x) > FLOAT32_MAX:
            raise DataError(f"{src}:{line}: {what} {str(value)[:40]} is out of range "
                            f"(|{what}| must be <= {FLOAT32_MAX:.3g})")
        return x


def _mismatch(df: pd.DataFrame, task: str, src: str, hint: str | None = None) -> None:
    found = detect_task(df)
    if found is not None and found != task:
        cols = [c for c in df.columns if c != LINE_COLUMN]
        hint = hint or f"the task is {task}; use --task {found}"
        raise DataError(f"{src}: this looks like {found} data (columns {cols}) but {hint}")


def load_pointwise(path, text_column: str | None = None, label_column: str | None = None,
                   label_kind: str | None = None, max_chars: int = MAX_CHARS,
                   task_hint: str | None = None) -> PointwiseData:
    """Load a pointwise file (see module docstring). ``label_kind`` forces ``binary``/``real``;
    with ``binary``, labels outside {0, 1} are errors naming the line. ``task_hint`` replaces the
    advice given when the file looks like pairwise data."""
    if label_kind not in (None, "binary", "real"):
        raise DataError(f"label kind {label_kind!r} unknown; allowed: binary, real")
    df = read_table(path)
    src = str(path)
    if text_column is None and label_column is None:
        _mismatch(df, "pointwise", src, task_hint)
    tcol = _find_column(df, text_column, TEXT_COLUMNS, "text", src)
    lcol = _find_column(df, label_column, LABEL_COLUMNS, "label", src)
    if tcol == lcol:
        raise DataError(f"{src}: the text and label columns are both {tcol!r}")
    clean = _Cleaner(src, max_chars)
    texts, labels, empty = [], [], 0
    for t, y, line in zip(df[tcol].tolist(), df[lcol].tolist(), df[LINE_COLUMN].tolist()):
        text = clean.text(t, line, "start")
        if text is None:
            empty += 1
            continue
        texts.append(text)
        labels.append((clean.number(y, line, "label"), line))
    if not texts:
        raise DataError(f"{src}: all {empty} texts are empty or whitespace")
    values = np.array([v for v, _ in labels], dtype=np.float32)
    is_binary = bool(np.all((values == 0) | (values == 1)))
    if label_kind is None:
        label_kind = "binary" if is_binary else "real"
    if label_kind == "binary" and not is_binary:
        bad, value = next((line, v) for v, line in labels if v not in (0.0, 1.0))
        raise DataError(f"{src}:{bad}: label {value:g} is out of range for a binary task (0 or 1)")
    return PointwiseData(texts, values, label_kind, src, {"empty_text": empty} if empty else {},
                         truncated=clean.truncated)


def _join_prompt(prompt: str | None, response: str) -> str:
    if not prompt:
        return response
    if prompt[-1:].isspace() or response[:1].isspace():
        return prompt + response
    return prompt + "\n" + response


def load_pairwise(path, max_chars: int = MAX_CHARS, task_hint: str | None = None) -> PairwiseData:
    """Load a pairwise file (see module docstring)."""
    df = read_table(path)
    src = str(path)
    _mismatch(df, "pairwise", src, task_hint)
    lower = {str(c).lower(): c for c in df.columns}
    missing = [c for c in PAIR_COLUMNS if c not in lower]
    if missing:
        cols = [c for c in df.columns if c != LINE_COLUMN]
        raise DataError(f"{src}: pairwise data needs columns chosen and rejected; missing {missing}; "
                        f"columns found: {cols}")
    prompts = df[lower["prompt"]].tolist() if "prompt" in lower else [None] * len(df)
    margins = df[lower["margin"]].tolist() if "margin" in lower else [0.0] * len(df)
    clean = _Cleaner(src, max_chars)
    chosen, rejected, margin = [], [], []
    empty = same = 0
    rows = zip(prompts, df[lower["chosen"]].tolist(), df[lower["rejected"]].tolist(), margins,
               df[LINE_COLUMN].tolist())
    for p, c, r, m, line in rows:
        prompt = clean.text(p, line, "end", "prompt") if p is not None else None
        c = clean.text(c, line, "end", "chosen text")
        r = clean.text(r, line, "end", "rejected text")
        if c is None or r is None:
            empty += 1
            continue
        if c == r:
            same += 1
            continue
        before = clean.truncated
        chosen.append(clean.text(_join_prompt(prompt, c), line, "end"))
        rejected.append(clean.text(_join_prompt(prompt, r), line, "end"))
        clean.truncated = before + (clean.truncated > before)  # count each pair once
        margin.append(clean.number(m, line, "margin"))
    skipped = {k: v for k, v in (("empty_text", empty), ("chosen_equals_rejected", same)) if v}
    if not chosen:
        raise DataError(f"{src}: no usable pairs ({empty} with empty text, {same} with chosen == rejected)")
    return PairwiseData(chosen, rejected, np.asarray(margin, np.float32), src, skipped,
                        truncated=clean.truncated)


def load_data(path, task: str, **kwargs) -> PointwiseData | PairwiseData:
    """Load ``path`` for ``task`` (``pointwise`` or ``pairwise``); keyword args go to the loader
    (pointwise-only ones are ignored for pairwise)."""
    if task == "pointwise":
        return load_pointwise(path, **kwargs)
    if task == "pairwise":
        kwargs = {k: v for k, v in kwargs.items() if k in ("max_chars", "task_hint")}
        return load_pairwise(path, **kwargs)
    raise DataError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")


def load_for_model(data, metadata: dict, where=None, training_columns: bool = False):
    """``data`` (a path, or data already loaded) for a model whose ``metadata.json`` is ``metadata``:
    the model's task; labels must be 0/1 for a pointwise model trained with binary cross-entropy
    (a line with another value is named); with ``training_columns``, the text and label columns its
    training run used. Needs no TensorFlow, so the CLI checks data before TensorFlow loads."""
    task = metadata["task"]
    if isinstance(data, (PointwiseData, PairwiseData)):
        loaded = data
    else:
        kwargs = {"task_hint": f"{where} is a {task} model"} if where else {}
        if task == "pointwise":
            if (metadata.get("loss") or "bce") == "bce":
                kwargs["label_kind"] = "binary"
            if training_columns:
                tc = metadata.get("train_config") or {}
                kwargs.update(text_column=tc.get("text_column"), label_column=tc.get("label_column"))
        loaded = load_data(data, task, **kwargs)
    if loaded.task != task:
        raise DataError(f"{loaded.source}: {loaded.task} data, but the model is {task}")
    return loaded


def load_training_data(data, cfg, validation=None):
    """``(data, validation)`` of a training run with settings ``cfg`` (a
    :class:`~rmcompress.config.training.TrainConfig`): paths loaded with its text and label columns
    (0/1 labels required when its loss is ``bce``), loaded data passed through; both checked against
    its task. ``validation`` stays None when not given. Needs no TensorFlow, so the CLI checks the
    data before TensorFlow loads."""
    columns = {"text_column": cfg.data.text_column, "label_column": cfg.data.label_column}
    if isinstance(data, (str, os.PathLike)):
        kwargs = {"label_kind": "binary"} if cfg.task == "pointwise" and cfg.loss == "bce" else {}
        data = load_data(data, cfg.task, **columns, **kwargs)
    if data.task != cfg.task:
        raise UsageError(f"data is {data.task} but the task is {cfg.task}")
    if isinstance(validation, (str, os.PathLike)):
        validation = load_data(validation, cfg.task, **columns)
    if validation is not None and validation.task != cfg.task:
        raise UsageError(f"validation data is {validation.task} but the task is {cfg.task}")
    check_learnable(data)
    if validation is None:
        check_split_sizes(len(data), cfg.data.val_fraction, data.source)
    return data, validation


def check_learnable(data) -> None:
    """Pointwise training data whose labels are all one value is an error naming the file: a model
    cannot learn to rank from it, and its validation metrics (AUC, correlation) are undefined."""
    if data.task != "pointwise" or len(data) == 0:
        return
    values = np.unique(data.labels)
    if len(values) == 1:
        what = ("class" if data.label_kind == "binary" else "value")
        raise DataError(f"{data.source or 'the training data'}: every label is {values[0]:g} ({len(data)} rows): training needs more "
                        f"than one {what}" + (" (0 and 1)" if data.label_kind == "binary" else ""))


def infer_task(path) -> str:
    """Guess the task of a data file from its columns (used by ``evaluate`` when no model says)."""
    task = detect_task(read_table(path))
    if task is None:
        raise DataError(f"{path}: cannot tell the task from its columns; pass --task")
    return task


SKIP_REASONS = {"empty_text": "with empty or whitespace-only text",
                "chosen_equals_rejected": "whose chosen text equals the rejected one"}


def data_notes(source, skipped: dict | None, truncated: int = 0) -> list[str]:
    """One-line notes on what loading skipped or cut (the CLI prints them on stderr; the same
    counts are in ``report.json`` as ``skipped_rows`` and ``truncated_texts``)."""
    notes = []
    if skipped:
        parts = [f"{n} {SKIP_REASONS.get(k, k)}" for k, n in skipped.items()]
        notes.append(f"{source}: skipped {sum(skipped.values())} rows ({'; '.join(parts)})")
    if truncated:
        notes.append(f"{source}: cut {truncated} over-long texts to the character limit")
    return notes


def load_texts(path, text_column: str | None = None, max_chars: int = MAX_CHARS) -> list[str]:
    """Unlabeled texts (for distillation): the text column of a table; any label column is ignored.
    Empty texts are skipped; none left is a :class:`DataError`."""
    df = read_table(path)
    src = str(path)
    tcol = _find_column(df, text_column, TEXT_COLUMNS, "text", src)
    clean = _Cleaner(src, max_chars)
    texts = [t for t in (clean.text(v, line, "start")
                         for v, line in zip(df[tcol].tolist(), df[LINE_COLUMN].tolist())) if t is not None]
    if not texts:
        raise DataError(f"{src}: no non-empty texts in column {tcol!r}")
    return texts
