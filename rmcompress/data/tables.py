"""Whatever holds the user's rows, as the one table the loaders validate.

:func:`as_table` takes

- a path (``str`` or ``os.PathLike``): read by :func:`rmcompress.data.formats.read_table`; the
  source is the path and rows are named by their line in the file;
- a pandas ``DataFrame``;
- anything with a ``to_pandas()`` method: a Hugging Face ``datasets.Dataset`` (one split of a
  ``DatasetDict``, e.g. ``dd["train"]``), a polars frame;
- a list (or tuple) of dicts, one dict a row; a dict of columns (``{"text": [...], ...}``); or a
  dict of single values, one row (``{"text": "...", "label": 1}``);
- a :class:`Table` (returned as is);

and returns a :class:`Table`: a pandas frame with a ``__line__`` column and the source's name. In
memory, rows are numbered from 1 (as Parquet rows are), so ``DataFrame:3`` names ``df.iloc[2]``;
the source is ``DataFrame``, ``Dataset`` (``Dataset[train]`` when the split is known), ``rows``
(a list of dicts), ``columns`` (a dict of columns) or ``row``. Column names are strings (a frame's
column ``0`` is named ``'0'``). The caller's frame is never modified.

A ``DatasetDict`` or a dict of frames (several splits), anything else, an empty table or a column name given twice is
a one-line :class:`~rmcompress.errors.RMCompressError` naming the argument (``data``,
``validation``, ...) or the source.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rmcompress.data.formats import LINE_COLUMN, read_table
from rmcompress.errors import DataError, UsageError

#: what :func:`as_table` accepts, as an error message lists it
ACCEPTED = "a file path, a pandas DataFrame, a datasets.Dataset, a list of dicts (rows) or a dict of columns"


@dataclass(frozen=True)
class Table:
    """Rows with their ``__line__`` numbers (``frame``) and the name errors give them (``source``)."""

    frame: pd.DataFrame
    source: str

    @property
    def columns(self) -> list:
        """The data's columns (``__line__`` left out)."""
        return [c for c in self.frame.columns if c != LINE_COLUMN]


def is_table_like(data) -> bool:
    """Whether :func:`as_table` reads ``data`` (by its type; its contents are checked there)."""
    return isinstance(data, (Table, str, os.PathLike, pd.DataFrame, list, tuple, Mapping)) or _has_to_pandas(data)


def as_table(data, argument: str = "data") -> Table:
    """``data`` (module docstring) as a :class:`Table`; ``argument`` is the name errors give it."""
    if isinstance(data, Table):
        return data
    if isinstance(data, (str, os.PathLike)):
        return Table(read_table(data), str(data))
    if isinstance(data, pd.DataFrame):
        return _from_frame(data, "DataFrame")
    if isinstance(data, Mapping):
        splits = [k for k, v in data.items() if _has_to_pandas(v) or isinstance(v, pd.DataFrame)]
        if splits:
            raise UsageError(f"{argument}: a dataset with splits {list(data)}; pass one split, e.g. "
                             f"{argument}[{splits[0]!r}]")
        if not any(isinstance(v, (list, tuple, np.ndarray, pd.Series)) for v in data.values()):
            return _from_frame(pd.DataFrame([dict(data)]), "row")  # one row: {'text': ..., 'label': ...}
        try:
            frame = pd.DataFrame({k: list(v) if not isinstance(v, str) else [v] for k, v in data.items()})
        except (TypeError, ValueError) as e:
            raise UsageError(f"{argument}: a dict of columns whose columns do not line up ({_first_line(e)}); "
                             "give every column the same number of values") from None
        return _from_frame(frame, "columns")
    if isinstance(data, (list, tuple)):
        for i, row in enumerate(data):
            if not isinstance(row, Mapping):
                raise UsageError(f"{argument}: element {i} is a {type(row).__name__}, expected a dict (one row "
                                 "such as {'text': ..., 'label': ...})")
        return _from_frame(pd.DataFrame(list(data)), "rows")
    if _has_to_pandas(data):
        frame = data.to_pandas()
        if not isinstance(frame, pd.DataFrame):  # datasets returns an iterator when batched
            frame = pd.concat(list(frame), ignore_index=True)
        split = getattr(data, "split", None)
        name = type(data).__name__
        return _from_frame(frame, f"{name}[{split}]" if split else name)
    raise UsageError(f"{argument}: a {type(data).__name__} is not data; pass {ACCEPTED}")


def _has_to_pandas(data) -> bool:
    return callable(getattr(data, "to_pandas", None)) and not isinstance(data, type)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _from_frame(frame: pd.DataFrame, source: str) -> Table:
    """A copy of ``frame`` with ``__line__`` = 1, 2, ... (its index dropped)."""
    names = [str(c) for c in frame.columns if c != LINE_COLUMN]
    seen = set()
    for name in names:
        if name in seen:
            raise DataError(f"{source}: column {name!r} appears twice; rename one")
        seen.add(name)
    if len(frame) == 0:
        raise DataError(f"{source}: no rows")
    if not names:
        raise DataError(f"{source}: no columns")
    out = frame.reset_index(drop=True)  # a new frame: the caller's stays as it was
    out.columns = [c if c == LINE_COLUMN else str(c) for c in out.columns]  # integer names can be named
    out[LINE_COLUMN] = range(1, len(out) + 1)
    return Table(out, source)
