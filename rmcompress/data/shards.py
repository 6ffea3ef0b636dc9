"""Data given as shards: a file, a directory of shard files or a glob, read chunk by chunk.

:func:`is_streamed` tells whether training reads ``data`` shard by shard
(:mod:`rmcompress.data.stream`) rather than loading it whole: a directory, a glob (a path with
``*``, ``?`` or ``[`` that names no file), a TFRecord file, or a single file larger than
:data:`~rmcompress.config.streaming.STREAM_FILE_BYTES` on disk. :func:`resolve` lists the shards:
a directory's data files (by suffix, hidden files left out, sorted by name, not recursive), a
glob's matches (sorted; ``**`` recurses). Shard formats: those of :mod:`rmcompress.data.formats`
plus ``.tfrecord`` (``tf.train.Example`` records, read by :mod:`rmcompress.data.tfrecords`), each
optionally ``.gz``.

:func:`text_chunks` and :func:`parquet_chunks` read a shard in frames of at most ``rows`` rows with
the ``__line__`` column of :mod:`rmcompress.data.formats` numbering rows by their line in the whole
file (Parquet: row number), parsed by the same parsers as a whole file, so a bad row names the
shard and its line. A CSV record spans lines while its quotes are open; a block ends only at the
end of a record. A JSON array (``[...]``) cannot be read in parts: such a shard is read whole. An
empty shard has no rows (not an error: the whole stream having none is).
"""
from __future__ import annotations

import glob
import gzip
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from rmcompress.config.streaming import CHUNK_ROWS, STREAM_FILE_BYTES
from rmcompress.data.formats import (LINE_COLUMN, SUPPORTED_SUFFIXES, check_unique_columns, is_stream,
                                     parse_text_block, read_table)
from rmcompress.errors import DataError

TFRECORD = ".tfrecord"
SHARD_SUFFIXES = SUPPORTED_SUFFIXES + (TFRECORD,)
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Shards:
    """The shard files of streamed data and the name it was given (``source``)."""

    source: str
    paths: tuple
    #: what :func:`rmcompress.data.split.resolve_mode` reads: the rows are not all in memory
    streamed = True

    def __str__(self) -> str:
        return self.source


def shard_format(path: Path) -> tuple[str, bool]:
    """``(suffix, gzipped)`` of a shard or a :class:`DataError` naming it."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    fmt = (suffixes[:-1] if gz else suffixes)[-1:] or [""]
    if fmt[0] not in SHARD_SUFFIXES:
        raise DataError(f"{path}: unknown data format {fmt[0] or '(no extension)'!r}; expected one of "
                        f"{', '.join(SHARD_SUFFIXES)} (optionally .gz)")
    return fmt[0], gz


def _is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS) and not os.path.lexists(text)


def is_streamed(data) -> bool:
    """Whether training streams ``data`` (module docstring): also true of :class:`Shards` and of
    scanned streamed data (``streamed`` is ``True``); tables and loaded data are not."""
    if getattr(data, "streamed", False) is True:
        return True
    if not isinstance(data, (str, os.PathLike)):
        return False
    text = os.fspath(data)
    if _is_glob(text):
        return True
    p = Path(text)
    if p.is_dir():
        return True
    if not p.is_file() or is_stream(p):
        return False
    suffixes = [s.lower() for s in p.suffixes]
    return TFRECORD in suffixes[-2:] or p.stat().st_size > STREAM_FILE_BYTES


def resolve(data) -> Shards:
    """The :class:`Shards` of ``data`` (a file, a directory, a glob; module docstring): each
    checked to exist with a known format; none is a :class:`DataError` naming ``data``."""
    if isinstance(data, Shards):
        return data
    source = os.fspath(data)
    p = Path(source)
    if _is_glob(source):
        paths = [Path(m) for m in sorted(glob.glob(source, recursive=True)) if Path(m).is_file()]
        if not paths:
            raise DataError(f"{source}: no file matches this pattern")
    elif p.is_dir():
        paths = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and _has_shard_suffix(f))
        if not paths:
            raise DataError(f"{source}: directory holds no data files ({', '.join(SHARD_SUFFIXES)}, optionally .gz)")
    elif p.is_file():
        paths = [p]
    else:
        raise DataError(f"{source}: no such file or directory")
    for path in paths:
        shard_format(path)
    return Shards(source, tuple(paths))


def _has_shard_suffix(path: Path) -> bool:
    try:
        shard_format(path)
    except DataError:
        return False
    return True


def _open(path: Path, gz: bool):
    try:
        return gzip.open(path, "rb") if gz else open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _lines(path: Path, gz: bool) -> Iterator[bytes]:
    """The file's lines (bytes, with their ends); read and gzip errors name the file."""
    with _open(path, gz) as f:
        try:
            yield from f
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            what = "not a valid gzip file" if gz else "cannot read"
            raise DataError(f"{path}: {what} ({e})") from None


def _decode(path: Path, raw: bytes, first_line: int, bom: bool) -> str:
    try:
        return raw.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as e:
        line = first_line + raw[: e.start].count(b"\n")
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x})") from None


def text_chunks(path: Path, fmt: str, gz: bool, rows: int | None = None) -> Iterator[pd.DataFrame]:
    """Frames of at most ``rows`` records (default ``CHUNK_ROWS``) of a CSV/TSV/JSON-lines shard
    (module docstring)."""
    rows = rows or CHUNK_ROWS
    lines = _lines(path, gz)
    header, line_no = None, 0
    if fmt in (".csv", ".tsv"):
        for raw in lines:
            line_no += 1
            if raw.strip():
                header = _decode(path, raw, line_no, line_no == 1)
                break
        if header is None:
            return
    block: list[bytes] = []
    block_line = line_no + 1  # the first line of the block
    records = quotes = 0
    record: list[bytes] = []  # the lines of the record being read
    carry: list[bytes] = []  # CSV/TSV: the previous block's last record, read again (see _block)
    last: list[bytes] = []
    for raw in lines:
        line_no += 1
        if not block:
            block_line = line_no
            if fmt in (".jsonl", ".json") and line_no == 1 and raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
                lines.close()
                yield read_table(path)  # a JSON array: read whole
                return
        block.append(raw)
        record.append(raw)
        if fmt == ".csv":
            quotes += raw.count(b'"')
            if quotes % 2:
                continue  # a quoted field goes on on the next line
            quotes = 0
        if raw.strip() or len(record) > 1:
            records += 1
            last = record
        record = []
        if records >= rows:
            yield _block(path, fmt, header, block, block_line, carry)
            block, records, carry = [], 0, (last if header is not None else [])
    if block:
        yield _block(path, fmt, header, block, block_line, carry)


def _block(path: Path, fmt: str, header: str | None, block: list[bytes], first_line: int,
           carry: list[bytes] = ()) -> pd.DataFrame:
    """The rows of ``block`` (its first line is line ``first_line`` of the file). CSV/TSV: parsed
    after the header and ``carry``, the previous block's last record, whose row is then dropped:
    pandas takes a first row with more fields than the header as an index, so every block but the
    first starts with a row that parsed before, and an extra field is an error as in a whole file."""
    if carry:
        frame = _block(path, fmt, header, list(carry) + block, first_line - len(carry))
        return frame.iloc[1:].reset_index(drop=True)
    return _parse(path, fmt, header, block, first_line)


def _parse(path: Path, fmt: str, header: str | None, block: list[bytes], first_line: int) -> pd.DataFrame:
    text = _decode(path, b"".join(block), first_line, first_line == 1)
    if header is None:
        return parse_text_block(path, text, fmt, first_line - 1)
    if not text.strip():
        return _empty()
    if not header.endswith("\n"):
        header += "\n"
    # the block's rows are named by the lines they have in the file: block line 2 is first_line
    return parse_text_block(path, header + text, fmt, first_line - 2)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({LINE_COLUMN: pd.Series([], dtype="int64")})


def parquet_chunks(path: Path, gz: bool, rows: int | None = None) -> Iterator[pd.DataFrame]:
    """Frames of at most ``rows`` rows of a Parquet shard, read batch by batch with pyarrow
    (``__line__``: the 1-based row number). A gzipped Parquet file is decompressed in memory."""
    rows = rows or CHUNK_ROWS
    import pyarrow.parquet as pq

    try:
        source = io.BytesIO(gzip.decompress(path.read_bytes())) if gz else path
        parquet = pq.ParquetFile(source)
        check_unique_columns(path, [str(n) for n in parquet.schema_arrow.names], "")
        start = 0
        for batch in parquet.iter_batches(batch_size=rows):
            frame = batch.to_pandas()
            frame[LINE_COLUMN] = range(start + 1, start + len(frame) + 1)
            start += len(frame)
            yield frame
    except DataError:
        raise
    except Exception as e:  # pyarrow raises many types for corrupt files
        reason = " ".join(str(e).split())
        raise DataError(f"{path}: not a readable Parquet file ({type(e).__name__}: {reason})") from None
