"""Read a data file into a pandas DataFrame, naming the file and line of any problem.

Supported: ``.csv``, ``.tsv``, ``.jsonl`` / ``.json`` (JSON lines), ``.parquet``, each optionally
gzipped (``.gz``). Every returned frame has a ``__line__`` column holding the 1-based line number of
each row in the file (header counted), so later validation can name the line. Nothing is evaluated
or unpickled: CSV/TSV/JSON are parsed as text, Parquet through pyarrow.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import zlib
from pathlib import Path

import pandas as pd

from rmcompress.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
LINE_COLUMN = "__line__"


def data_format(path: Path) -> tuple[str, bool]:
    """Return ``(suffix, gzipped)`` for ``path`` or raise :class:`DataError` for unknown kinds."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    fmt = suffixes[-1] if suffixes else ""
    if fmt not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{path}: unknown data format {fmt or '(no extension)'!r}; expected one of "
            f"{', '.join(SUPPORTED_SUFFIXES)} (optionally .gz)"
        )
    return fmt, gz


def _read_bytes(path: Path, gz: bool) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if gz:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        what = "not a valid gzip file" if gz and not isinstance(e, (FileNotFoundError, PermissionError)) else "cannot read"
        raise DataError(f"{path}: {what} ({e})") from None
    return raw


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x})") from None


def _short(e: BaseException) -> str:
    """First line of an exception message, at most 200 characters."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def check_path(path: str | os.PathLike) -> Path:
    """Raise :class:`DataError` unless ``path`` is an existing regular file that is not empty, or a
    stream (a pipe, ``<(...)``, ``/dev/stdin``: its size is known only once read)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a data file")
    if not is_stream(p) and p.stat().st_size == 0:
        raise DataError(f"{p}: file is empty")
    return p


def is_stream(p: Path) -> bool:
    """A pipe, a process substitution ``<(...)`` or a descriptor (``/dev/stdin``, ``/dev/fd/N``):
    read once, named without a data suffix."""
    return not p.is_file() or str(p).startswith(("/dev/", "/proc/"))


def sniff_format(raw: bytes) -> tuple[str, bool]:
    """``(suffix, gzipped)`` told from the bytes of a stream whose name has no data suffix: gzip
    and Parquet by their magic numbers; text starting with ``{`` or ``[``: JSON lines; a tab in
    the first line: TSV; else CSV."""
    gz = raw[:2] == b"\x1f\x8b"
    if gz:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            return ".csv", True  # reported as not valid gzip when read
    if raw[:4] == b"PAR1":
        return ".parquet", gz
    head = raw[:65536].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] in (b"{", b"["):
        return ".jsonl", gz
    first = head.split(b"\n", 1)[0]
    return (".tsv" if b"\t" in first else ".csv"), gz


def _stream_format(p: Path, raw: bytes) -> tuple[str, bool]:
    """The format of a stream: from its name when that has a data suffix, else sniffed."""
    try:
        return data_format(p)
    except DataError:
        return sniff_format(raw)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``path`` into a DataFrame with a ``__line__`` column (see module docstring). A stream
    (pipe, process substitution) is read once; its format comes from its name or its bytes."""
    p = check_path(path)
    if is_stream(p):
        raw = _read_bytes(p, False)
        if not raw:
            raise DataError(f"{p}: stream is empty")
        fmt, gz = _stream_format(p, raw)
        if fmt == ".parquet":
            return _parquet(p, io.BytesIO(_gunzip(p, raw) if gz else raw))
        if gz:
            raw = _gunzip(p, raw)
        return _text_table(p, raw, fmt)
    fmt, gz = data_format(p)
    if fmt == ".parquet":
        return _parquet(p, io.BytesIO(_read_bytes(p, gz)) if gz else p)
    return _text_table(p, _read_bytes(p, gz), fmt)


def _gunzip(p: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{p}: not a valid gzip file ({e})") from None


def _parquet(p: Path, source) -> pd.DataFrame:
    try:
        df = pd.read_parquet(source)
    except Exception as e:  # pyarrow raises many types for corrupt files
        reason = " ".join(str(e).split())  # pyarrow's messages can end in a newline
        raise DataError(f"{p}: not a readable Parquet file ({type(e).__name__}: {reason})") from None
    check_unique_columns(p, [str(c) for c in df.columns], "")
    df = df.reset_index(drop=True)
    df[LINE_COLUMN] = range(1, len(df) + 1)  # Parquet has no lines: row numbers, 1-based
    return _nonempty(p, df)


def check_unique_columns(p: Path, names: list[str], where: str = ":1") -> None:
    """A column name given twice is an error naming it (pandas would silently rename the second)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if not name.strip():  # unnamed columns (trailing separators) are never selected
            continue
        if name in seen:
            raise DataError(f"{p}{where}: column {name!r} appears twice in the header (columns {seen[name]} "
                            f"and {i}); rename one")
        seen[name] = i


def _nonempty(p: Path, df: pd.DataFrame) -> pd.DataFrame:
    if len(df) == 0:
        raise DataError(f"{p}: file has a header but no rows")
    return df


def _text_table(p: Path, raw: bytes, fmt: str) -> pd.DataFrame:
    text = _decode(p, raw)
    if not text.strip():
        raise DataError(f"{p}: file has no data")
    df = _read_jsonl(p, text) if fmt in (".jsonl", ".json") else _read_delimited(p, text, fmt)
    return _nonempty(p, df)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list) -> dict:
    """``object_pairs_hook`` of :func:`json.loads` refusing a key given twice in one object (the
    standard parser keeps the last silently)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _loads(text: str, p: Path, decode_message, other_prefix: str, where: str):
    """``json.loads(text)``; a syntax error raises ``DataError(decode_message(error))``, a key given
    twice in one object ``DataError(where: key 'k' appears twice ...)``, anything else the parser
    refuses (nesting too deep, integers of > 4300 digits) ``DataError(other_prefix (why))``."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise DataError(decode_message(e)) from None
    except _DuplicateKey as e:
        raise DataError(f"{where}: key {e.args[0]!r} appears twice in one object (column {e.args[0]!r} "
                        "given twice); keep one") from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"{other_prefix} ({_short(e)})") from None


def parse_text_block(p: Path, text: str, fmt: str, line_offset: int = 0) -> pd.DataFrame:
    """A block of a CSV/TSV/JSON-lines file (CSV/TSV: the header line, then whole records) as a
    frame with ``__line__`` (possibly no rows): the block's line numbers plus ``line_offset``, so
    rows and errors are named by their line in the whole file."""
    if fmt in (".jsonl", ".json"):
        return _read_jsonl(p, text, line_offset)
    return _read_delimited(p, text, fmt, line_offset)


def _read_jsonl(p: Path, text: str, line_offset: int = 0) -> pd.DataFrame:
    rows, lines = [], []
    stripped = text.lstrip()
    if stripped.startswith("[") and not line_offset:  # a single JSON array is accepted too
        data = _loads(text, p, lambda e: f"{p}:{e.lineno}: malformed JSON ({e.msg})", f"{p}: malformed JSON",
                      str(p))
        if not isinstance(data, list):
            raise DataError(f"{p}: a JSON file must hold one object per line or an array of objects")
        for i, obj in enumerate(data):
            if not isinstance(obj, dict):
                raise DataError(f"{p}: element {i} of the JSON array is not an object")
        return _frame(p, data, list(range(1, len(data) + 1)), "element")
    for lineno, line in enumerate(text.splitlines(), start=1 + line_offset):
        if not line.strip():
            continue
        obj = _loads(line, p, lambda e: f"{p}:{lineno}: malformed JSON line ({e.msg})",
                     f"{p}:{lineno}: malformed JSON line", f"{p}:{lineno}")
        if not isinstance(obj, dict):
            raise DataError(f"{p}:{lineno}: JSON line is not an object")
        rows.append(obj)
        lines.append(lineno)
    return _frame(p, rows, lines)


def _frame(p: Path, rows: list[dict], lines: list[int], unit: str = "line") -> pd.DataFrame:
    """Rows of JSON objects -> a frame with ``__line__``; strings that are not valid Unicode (a
    lone surrogate escaped as ``\\ud800``) are errors naming the line."""
    try:
        df = pd.DataFrame(rows)
    except UnicodeEncodeError:
        for obj, line in zip(rows, lines):
            for k, v in obj.items():
                for s in (k, v):
                    if isinstance(s, str):
                        try:
                            s.encode("utf-8")
                        except UnicodeEncodeError:
                            where = f"{p}:{line}" if unit == "line" else f"{p}: element {line - 1}"
                            raise DataError(f"{where}: string {s[:20]!r} is not valid Unicode") from None
        raise DataError(f"{p}: holds strings that are not valid Unicode") from None
    df[LINE_COLUMN] = lines
    return df


def _read_delimited(p: Path, text: str, fmt: str, line_offset: int = 0) -> pd.DataFrame:
    sep = "\t" if fmt == ".tsv" else ","
    # TSV as GLUE writes it: no quoting, so quote characters are text. CSV: standard quoting.
    quoting = csv.QUOTE_NONE if fmt == ".tsv" else csv.QUOTE_MINIMAL
    try:
        header = next((row for row in csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting) if row), [])
    except csv.Error:
        header = []  # pandas names the problem below
    check_unique_columns(p, header)
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=sep, quoting=quoting, dtype=str, keep_default_na=False,
            na_values=[], skip_blank_lines=True, engine="c",
        )
    except pd.errors.ParserError as e:
        why = re.sub(r"line (\d+)", lambda m: f"line {int(m[1]) + line_offset}", str(e).strip())
        raise DataError(f"{p}: malformed {fmt[1:].upper()} ({why})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: file has no data") from None
    # Line numbers: header is line 1. Without embedded newlines, row i is line i + 2 + blanks
    # before it; count the non-blank physical lines to map precisely.
    phys = [i for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if len(phys) == len(df) + 1:
        df[LINE_COLUMN] = [line + line_offset for line in phys[1:]]
    else:  # quoted fields spanning lines: fall back to record numbers (+1 for the header)
        df[LINE_COLUMN] = range(2 + line_offset, len(df) + 2 + line_offset)
    return df
