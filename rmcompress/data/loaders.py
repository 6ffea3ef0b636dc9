"""Load and validate reward-model data: pointwise (text -> label/score) or pairwise (chosen/rejected).

Contracts
- Pointwise: a text column and a label column, auto-detected from :data:`TEXT_COLUMNS` and
  :data:`LABEL_COLUMNS` (or named by the caller). Labels that are all 0/1 (or booleans) make a
  *binary* task trained with binary cross-entropy on the reward logit; other numbers make a *real*
  task trained with MSE or MAE.
- Pairwise: ``chosen`` and ``rejected`` (Anthropic HH-RLHF), or ``prompt``, ``chosen``,
  ``rejected`` (TRL's format; the prompt is prepended to both), each column found by its name in
  any case or named by the caller (``prompt_column``, ``chosen_column``, ``rejected_column``). A
  cell may hold a conversation (TRL's conversational format: a list of ``{"role", "content"}``
  messages), written as plain text by :mod:`rmcompress.data.conversation`. An optional numeric
  ``margin`` column is the per-pair margin of the loss ``-log sigmoid(r_c - r_r - margin)``.
- The data is anything :func:`rmcompress.data.tables.as_table` reads: a file, a pandas
  ``DataFrame``, a ``datasets.Dataset``, a list of dicts. :func:`infer_task` tells the task from
  the columns (chosen + rejected: pairwise; a text and a label column: pointwise); both or neither
  is an error naming the source and the columns.
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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rmcompress.config.choices import COLUMN_SETTINGS, TASK_COLUMNS, TASKS
from rmcompress.config.validation import suggest
from rmcompress.data.conversation import is_conversation, render
from rmcompress.data.formats import LINE_COLUMN
from rmcompress.data.shards import is_streamed, resolve
from rmcompress.data.split import check_split_sizes
from rmcompress.data.tables import ACCEPTED, Table, as_table, is_table_like
from rmcompress.errors import DataError, UsageError

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "input", "comment", "utterance")
LABEL_COLUMNS = ("label", "labels", "score", "reward", "rating", "target", "y")
PAIR_COLUMNS = ("chosen", "rejected")
MAX_CHARS = 20_000


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


def fitting_tasks(df: pd.DataFrame) -> list[str]:
    """The tasks whose columns the frame has by their usual names: ``pairwise`` (chosen and
    rejected), ``pointwise`` (a text and a label column)."""
    lower = {str(c).lower() for c in df.columns}
    found = []
    if all(c in lower for c in PAIR_COLUMNS):
        found.append("pairwise")
    if any(c in lower for c in TEXT_COLUMNS) and any(c in lower for c in LABEL_COLUMNS):
        found.append("pointwise")
    return found


def detect_task(df: pd.DataFrame) -> str | None:
    """The one task the frame's columns fit (:func:`fitting_tasks`), else ``None``."""
    found = fitting_tasks(df)
    return found[0] if len(found) == 1 else None


def infer_task(data, **columns) -> str:
    """The task of ``data`` (anything :func:`~rmcompress.data.tables.as_table` reads) told from its
    columns: the task whose columns are named in ``columns`` (``text_column``, ``chosen_column``,
    ...), else the one task its column names fit. Columns that fit both tasks or neither: a
    :class:`DataError` naming the source and the columns found; columns named for both tasks: a
    :class:`UsageError`."""
    _check_column_arguments("infer_task", columns)
    table = as_table(data)
    named = [task for task, names in TASK_COLUMNS.items() if any(columns.get(n) is not None for n in names)]
    if len(named) == 2:
        flags = [_flag(n) for n in COLUMN_SETTINGS if columns.get(n) is not None]
        raise UsageError(f"{table.source}: {', '.join(flags)} name columns of both tasks; pass --task, or "
                         "name only one task's columns")
    if named:
        return named[0]
    found = fitting_tasks(table.frame)
    if len(found) == 1:
        return found[0]
    cols = table.columns
    if found:
        raise DataError(f"{table.source}: the columns {cols} fit both tasks (pairwise: chosen and rejected; "
                        "pointwise: a text and a label column); pass --task pointwise or --task pairwise")
    raise DataError(f"{table.source}: cannot tell the task from the columns {cols}: pairwise needs chosen and "
                    "rejected, pointwise a text and a label column; pass --task, or name the columns with "
                    "--chosen-column/--rejected-column or --text-column/--label-column")


def _flag(argument: str) -> str:
    return "--" + argument.replace("_", "-")


def _check_column_arguments(function: str, columns: dict) -> None:
    """Unknown column arguments, or names that are not strings: one :class:`UsageError` line."""
    for name, value in columns.items():
        if name not in COLUMN_SETTINGS:
            raise UsageError(f"{function}: unknown argument {name!r}{suggest(name, COLUMN_SETTINGS)}; allowed: "
                             f"{', '.join(COLUMN_SETTINGS)}")
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{function}: {name} is a {type(value).__name__}, expected a column name (a string)")


FLOAT32_MAX = float(np.finfo(np.float32).max)


class Cleaner:
    """Per-file text and number checks; counts the texts it truncates."""

    def __init__(self, src: str, max_chars: int):
        if int(max_chars) < 1:
            raise DataError(f"max_chars {max_chars} must be >= 1")
        self.src, self.max_chars, self.truncated = src, int(max_chars), 0

    def text(self, value, line: int, keep: str, what: str = "text") -> str | None:
        """The text, cut to ``max_chars`` (keeping the ``keep`` side), or ``None`` when empty. A
        conversation (a list of messages) is written as text first (:mod:`rmcompress.data.conversation`)."""
        if is_conversation(value):
            value = render(value, f"{self.src}:{line}: {what}")
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
    if found is not None and found != task:  # data that fits both tasks is loaded as told
        cols = [c for c in df.columns if c != LINE_COLUMN]
        hint = hint or f"the task is {task}; use --task {found}"
        raise DataError(f"{src}: this looks like {found} data (columns {cols}) but {hint}")


def pointwise_columns(table: Table, text_column: str | None = None, label_column: str | None = None,
                      task_hint: str | None = None) -> tuple[str, str]:
    """``(text column, label column)`` of a pointwise table (found by name or as given), after
    checking that the table does not look like pairwise data."""
    df, src = table.frame, table.source
    if text_column is None and label_column is None:
        _mismatch(df, "pointwise", src, task_hint)
    tcol = _find_column(df, text_column, TEXT_COLUMNS, "text", src)
    lcol = _find_column(df, label_column, LABEL_COLUMNS, "label", src)
    if tcol == lcol:
        raise DataError(f"{src}: the text and label columns are both {tcol!r}")
    return tcol, lcol


def pointwise_rows(df: pd.DataFrame, tcol: str, lcol: str, clean: "Cleaner") -> tuple[list, list, int]:
    """``(texts, [(label, line)], empty)``: the rows of ``df`` checked by ``clean``; rows with empty
    text are left out and counted."""
    texts, labels, empty = [], [], 0
    for t, y, line in zip(df[tcol].tolist(), df[lcol].tolist(), df[LINE_COLUMN].tolist()):
        text = clean.text(t, line, "start")
        if text is None:
            empty += 1
            continue
        texts.append(text)
        labels.append((clean.number(y, line, "label"), line))
    return texts, labels, empty


def check_label_kind(labels: list, label_kind: str | None, src: str) -> str:
    """The label kind of ``[(label, line)]``: ``label_kind`` when given, else ``binary`` when every
    label is 0 or 1, else ``real``; a ``binary`` kind with another value is an error naming its line."""
    values = np.array([v for v, _ in labels], dtype=np.float32)
    is_binary = bool(np.all((values == 0) | (values == 1)))
    if label_kind is None:
        label_kind = "binary" if is_binary else "real"
    if label_kind == "binary" and not is_binary:
        bad, value = next((line, v) for v, line in labels if v not in (0.0, 1.0))
        raise DataError(f"{src}:{bad}: label {value:g} is out of range for a binary task (0 or 1)")
    return label_kind


def load_pointwise(data, text_column: str | None = None, label_column: str | None = None,
                   label_kind: str | None = None, max_chars: int = MAX_CHARS,
                   task_hint: str | None = None) -> PointwiseData:
    """Load pointwise data: a file or a table (see module docstring). ``label_kind`` forces
    ``binary``/``real``; with ``binary``, labels outside {0, 1} are errors naming the line.
    ``task_hint`` replaces the advice given when the data looks like pairwise data."""
    if label_kind not in (None, "binary", "real"):
        raise DataError(f"label kind {label_kind!r} unknown; allowed: binary, real")
    _check_column_arguments("load_pointwise", {"text_column": text_column, "label_column": label_column})
    table = as_table(data)
    df, src = table.frame, table.source
    tcol, lcol = pointwise_columns(table, text_column, label_column, task_hint)
    clean = Cleaner(src, max_chars)
    texts, labels, empty = pointwise_rows(df, tcol, lcol, clean)
    if not texts:
        raise DataError(f"{src}: all {empty} texts are empty or whitespace")
    values = np.array([v for v, _ in labels], dtype=np.float32)
    label_kind = check_label_kind(labels, label_kind, src)
    return PointwiseData(texts, values, label_kind, src, {"empty_text": empty} if empty else {},
                         truncated=clean.truncated)


def _join_prompt(prompt: str | None, response: str, conversation: bool = False) -> str:
    """The prompt, then the response: joined by a newline, unless plain text already has white
    space at the seam; rendered conversations always by a newline (their template)."""
    if not prompt:
        return response
    if not conversation and (prompt[-1:].isspace() or response[:1].isspace()):
        return prompt + response
    return prompt + "\n" + response


def pairwise_columns(table: Table, task_hint: str | None = None, prompt_column: str | None = None,
                     chosen_column: str | None = None, rejected_column: str | None = None) -> dict:
    """``{"prompt", "chosen", "rejected", "margin"}``: the columns of a pairwise table (prompt and
    margin ``None`` when absent), after checking that it does not look like pointwise data."""
    df, src = table.frame, table.source
    if chosen_column is None and rejected_column is None:
        _mismatch(df, "pairwise", src, task_hint)
    lower = {str(c).lower(): c for c in df.columns}
    missing = [c for c, given in zip(PAIR_COLUMNS, (chosen_column, rejected_column))
               if given is None and c not in lower]
    if missing:
        raise DataError(f"{src}: pairwise data needs columns chosen and rejected; missing {missing}; "
                        f"columns found: {table.columns}; name them with --chosen-column/--rejected-column")
    ccol = _find_column(df, chosen_column, ("chosen",), "chosen", src)
    rcol = _find_column(df, rejected_column, ("rejected",), "rejected", src)
    pcol = (_find_column(df, prompt_column, ("prompt",), "prompt", src)
            if prompt_column is not None or "prompt" in lower else None)
    if ccol == rcol:
        raise DataError(f"{src}: the chosen and rejected columns are both {ccol!r}")
    return {"prompt": pcol, "chosen": ccol, "rejected": rcol, "margin": lower.get("margin")}


def pairwise_rows(df: pd.DataFrame, columns: dict, clean: "Cleaner") -> tuple[list, list, list, dict]:
    """``(chosen, rejected, margins, skipped)``: the pairs of ``df`` (``columns`` from
    :func:`pairwise_columns`) checked by ``clean``, the prompt joined to both texts; pairs with an
    empty text or chosen equal to rejected are left out and counted in ``skipped``."""
    pcol, ccol, rcol, mcol = (columns[k] for k in ("prompt", "chosen", "rejected", "margin"))
    prompts = df[pcol].tolist() if pcol is not None else [None] * len(df)
    margins = df[mcol].tolist() if mcol is not None else [0.0] * len(df)
    chosen, rejected, margin = [], [], []
    empty = same = 0
    rows = zip(prompts, df[ccol].tolist(), df[rcol].tolist(), margins,
               df[LINE_COLUMN].tolist())
    for p, c, r, m, line in rows:
        conv = any(is_conversation(v) for v in (p, c, r))
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
        chosen.append(clean.text(_join_prompt(prompt, c, conv), line, "end"))
        rejected.append(clean.text(_join_prompt(prompt, r, conv), line, "end"))
        clean.truncated = before + (clean.truncated > before)  # count each pair once
        margin.append(clean.number(m, line, "margin"))
    skipped = {k: v for k, v in (("empty_text", empty), ("chosen_equals_rejected", same)) if v}
    return chosen, rejected, margin, skipped


def load_pairwise(data, max_chars: int = MAX_CHARS, task_hint: str | None = None,
                  prompt_column: str | None = None, chosen_column: str | None = None,
                  rejected_column: str | None = None) -> PairwiseData:
    """Load pairwise data: a file or a table (see module docstring); the ``..._column`` arguments
    name columns that are not called ``prompt``, ``chosen`` and ``rejected``."""
    named = {"prompt_column": prompt_column, "chosen_column": chosen_column, "rejected_column": rejected_column}
    _check_column_arguments("load_pairwise", named)
    table = as_table(data)
    src = table.source
    columns = pairwise_columns(table, task_hint, prompt_column, chosen_column, rejected_column)
    clean = Cleaner(src, max_chars)
    chosen, rejected, margin, skipped = pairwise_rows(table.frame, columns, clean)
    if not chosen:
        empty, same = skipped.get("empty_text", 0), skipped.get("chosen_equals_rejected", 0)
        raise DataError(f"{src}: no usable pairs ({empty} with empty text, {same} with chosen == rejected)")
    return PairwiseData(chosen, rejected, np.asarray(margin, np.float32), src, skipped,
                        truncated=clean.truncated)


#: the keyword arguments of :func:`load_data` besides the columns, and the task they apply to
LOAD_OPTIONS = {"label_kind": "pointwise", "max_chars": None, "task_hint": None}


def load_data(data, task: str | None = None, **kwargs) -> PointwiseData | PairwiseData:
    """Load ``data`` (a file path, a pandas ``DataFrame``, a ``datasets.Dataset``, a list of dicts:
    :func:`rmcompress.data.tables.as_table`) for ``task`` (``pointwise`` or ``pairwise``; ``None``:
    told from the columns, :func:`infer_task`). Keyword args go to the task's loader
    (``text_column``, ``label_column``, ``label_kind`` pointwise; ``prompt_column``,
    ``chosen_column``, ``rejected_column`` pairwise; ``max_chars``, ``task_hint`` both); those of
    the other task are ignored."""
    unknown = [k for k in kwargs if k not in COLUMN_SETTINGS and k not in LOAD_OPTIONS]
    if unknown:
        allowed = list(COLUMN_SETTINGS) + list(LOAD_OPTIONS)
        raise UsageError(f"load_data: unknown argument {unknown[0]!r}{suggest(unknown[0], allowed)}; allowed: "
                         f"{', '.join(allowed)}")
    if task is not None and task not in TASKS:
        raise UsageError(f"load_data: task {task!r} unknown; allowed: {', '.join(TASKS)}{suggest(task, TASKS)}")
    columns = {k: v for k, v in kwargs.items() if k in COLUMN_SETTINGS}
    _check_column_arguments("load_data", columns)
    if isinstance(data, (PointwiseData, PairwiseData)):
        if task is not None and data.task != task:
            raise UsageError(f"load_data: data is already loaded as {data.task} data, but the task is {task}")
        return data
    if not is_table_like(data):
        raise UsageError(f"load_data: data is a {type(data).__name__}; pass {ACCEPTED}")
    table = as_table(data)
    if task is None:
        task = infer_task(table, **columns)
    kwargs = {k: v for k, v in kwargs.items()
              if k in TASK_COLUMNS[task] or LOAD_OPTIONS.get(k, "") in (None, task)}
    return load_pointwise(table, **kwargs) if task == "pointwise" else load_pairwise(table, **kwargs)


def _columns(source: dict) -> dict:
    """The column arguments held by ``source`` (settings, a saved train config): those not None."""
    return {k: source.get(k) for k in COLUMN_SETTINGS if source.get(k) is not None}


def load_for_model(data, metadata: dict, where=None, training_columns: bool = False,
                   columns: dict | None = None):
    """``data`` (a path, a table :func:`~rmcompress.data.tables.as_table` reads, or data already
    loaded) for a model whose ``metadata.json`` is ``metadata``: the model's task; labels must be
    0/1 for a pointwise model trained with binary cross-entropy (a line with another value is
    named); the columns named in ``columns`` (``text_column``, ``chosen_column``, ...), the others
    (with ``training_columns``) as its training run named them. Needs no TensorFlow, so the CLI
    checks data before TensorFlow loads."""
    task = metadata["task"]
    if isinstance(data, (PointwiseData, PairwiseData)):
        loaded = data
    else:
        kwargs = {"task_hint": f"{where} is a {task} model"} if where else {}
        if task == "pointwise" and (metadata.get("loss") or "bce") == "bce":
            kwargs["label_kind"] = "binary"
        if training_columns:
            kwargs.update(_columns(metadata.get("train_config") or {}))
        kwargs.update(_columns(columns or {}))
        loaded = load_data(data, task, **kwargs)
    if loaded.task != task:
        raise DataError(f"{loaded.source}: {loaded.task} data, but the model is {task}")
    return loaded


def load_training_data(data, cfg, validation=None):
    """``(data, validation)`` of a training run with settings ``cfg`` (a
    :class:`~rmcompress.config.training.TrainConfig`): paths loaded with its text and label columns
    (0/1 labels required when its loss is ``bce``), loaded data passed through; both checked against
    its task. ``validation`` stays None when not given. Needs no TensorFlow, so the CLI checks the
    data before TensorFlow loads. Streamed data (:func:`rmcompress.data.shards.is_streamed`) comes
    back as its :class:`~rmcompress.data.shards.Shards`, checked to exist with known formats; its
    rows are read and checked while training (:mod:`rmcompress.data.stream`)."""
    columns = _columns(vars(cfg.data))
    if is_streamed(data):
        if validation is not None and is_streamed(validation):
            validation = resolve(validation)
        elif validation is not None and not isinstance(validation, (PointwiseData, PairwiseData)):
            validation = load_data(_table(validation, "validation"), cfg.task, **columns)
        return resolve(data), validation
    if not isinstance(data, (PointwiseData, PairwiseData)):
        kwargs = {"label_kind": "binary"} if cfg.task == "pointwise" and cfg.loss == "bce" else {}
        data = load_data(_table(data, "data"), cfg.task, **columns, **kwargs)
    if data.task != cfg.task:
        raise UsageError(f"data is {data.task} but the task is {cfg.task}")
    if validation is not None and not isinstance(validation, (PointwiseData, PairwiseData)):
        validation = load_data(_table(validation, "validation"), cfg.task, **columns)
    if validation is not None and validation.task != cfg.task:
        raise UsageError(f"validation data is {validation.task} but the task is {cfg.task}")
    check_learnable(data)
    if validation is None:
        check_split_sizes(len(data), cfg.data.val_fraction, data.source)
    return data, validation


def _table(data, argument: str) -> Table:
    """``data`` as a table, a wrong type named as ``argument`` of ``train``."""
    if not is_table_like(data):
        raise UsageError(f"train: {argument} is a {type(data).__name__}; pass {ACCEPTED} (or data from load_data)")
    return as_table(data, argument)


def check_learnable(data) -> None:
    """Pointwise training data whose labels are all one value is an error naming the file: a model
    cannot learn to rank from it, and its validation metrics (AUC, correlation) are undefined."""
    if data.task != "pointwise" or len(data) == 0:
        return
    check_label_values(np.unique(data.labels), len(data), data.label_kind, data.source)


def check_label_values(values, n_rows: int, label_kind: str, source: str) -> None:
    """:func:`check_learnable` from the distinct label ``values`` seen in ``n_rows`` rows."""
    if len(values) == 1:
        what = ("class" if label_kind == "binary" else "value")
        raise DataError(f"{source or 'the training data'}: every label is {values[0]:g} ({n_rows} rows): training needs more "
                        f"than one {what}" + (" (0 and 1)" if label_kind == "binary" else ""))


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


def load_texts(data, text_column: str | None = None, max_chars: int = MAX_CHARS) -> list[str]:
    """Unlabeled texts (for distillation, scoring): the text column of a file or table; any label
    column is ignored. Empty texts are skipped; none left is a :class:`DataError`."""
    _check_column_arguments("load_texts", {"text_column": text_column})
    table = as_table(data)
    df, src = table.frame, table.source
    tcol = _find_column(df, text_column, TEXT_COLUMNS, "text", src)
    clean = Cleaner(src, max_chars)
    texts = [t for t in (clean.text(v, line, "start")
                         for v, line in zip(df[tcol].tolist(), df[LINE_COLUMN].tolist())) if t is not None]
    if not texts:
        raise DataError(f"{src}: no non-empty texts in column {tcol!r}")
    return texts
