"""TFRecord shards of ``tf.train.Example`` records, read as frames of rows.

Each record is one row: each feature one column. A ``bytes_list`` feature holds UTF-8 text, a
``float_list`` or ``int64_list`` a number; a feature with one value is that value, with none a
missing value (an empty text, a missing label). A feature with several values, bytes that are not
UTF-8 or a record that is not a ``tf.train.Example`` is a :class:`DataError` naming the shard and
the record (``path:N``, 1-based, as a row's line). Read with ``tf.data.TFRecordDataset``
(``compression_type="GZIP"`` for ``.gz``), ``rows`` records at a time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd

from rmcompress._keras import tf
from rmcompress.config.streaming import CHUNK_ROWS
from rmcompress.data.formats import LINE_COLUMN
from rmcompress.errors import DataError


def _row(path: Path, record: int, raw: bytes) -> dict:
    try:
        example = tf.train.Example.FromString(raw)
    except Exception:  # protobuf's DecodeError
        raise DataError(f"{path}:{record}: not a tf.train.Example record") from None
    row = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if len(values) > 1:
            raise DataError(f"{path}:{record}: feature {name!r} holds {len(values)} values; expected one")
        value = values[0] if values else None
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{record}: feature {name!r} is not valid UTF-8 "
                                f"(byte {value[e.start]:#04x})") from None
        row[name] = value
    return row


def tfrecord_chunks(path: Path, gz: bool, rows: int | None = None) -> Iterator[pd.DataFrame]:
    """Frames of at most ``rows`` records (default ``CHUNK_ROWS``) of a TFRecord shard."""
    rows = rows or CHUNK_ROWS
    records = tf.data.TFRecordDataset(str(path), compression_type="GZIP" if gz else "").batch(rows)
    start = 0
    iterator = iter(records.as_numpy_iterator())
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (tf.errors.OpError, OSError) as e:
            reason = " ".join(str(getattr(e, "message", e)).split())[:200]
            raise DataError(f"{path}: not a readable TFRecord file ({reason})") from None
        frame = pd.DataFrame([_row(path, start + i + 1, raw) for i, raw in enumerate(batch)])
        frame[LINE_COLUMN] = range(start + 1, start + len(batch) + 1)
        start += len(batch)
        yield frame
