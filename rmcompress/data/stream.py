"""Streamed training data: shards read chunk by chunk, checked by the loaders' rules, split by a
hash of the text and tokenised inside ``tf.data``; memory stays bounded whatever the data's size.

Contract
- :func:`scan` reads every shard once (:mod:`rmcompress.data.shards`; TFRecord:
  :mod:`rmcompress.data.tfrecords`), each row checked exactly as :mod:`rmcompress.data.loaders`
  checks a loaded file (columns found by name per chunk, the same cleaning, skipping and
  truncation; a bad row is a :class:`DataError` naming its shard and line). It counts the rows,
  the validation rows, the skipped and cut ones, tells the label kind, fingerprints the rows, and
  keeps only bounded samples (:mod:`rmcompress.config.streaming`): the first ``VOCAB_SAMPLE_ROWS``
  training rows' texts (the vocabulary is trained on them), the first ``VAL_ROWS`` validation rows
  and the first ``TRAIN_SAMPLE_ROWS`` training rows, as loaded data.
- A row is a validation row by the ``hash`` split of :mod:`rmcompress.data.split` (the key: the
  text; a pair's chosen and rejected texts after the prompt is joined): the same rows as
  ``--split hash`` on the same data loaded in memory. Validation rows past ``VAL_ROWS`` are held
  out of training and not measured.
- :meth:`StreamedData.dataset` reads the shards again for each pass (``tf.data.Dataset.from_generator``
  over chunks, unbatched to rows), shuffles in a buffer of ``SHUFFLE_ROWS`` rows, batches, and
  tokenises each batch with :meth:`rmcompress.data.tokenizer.Tokenizer.tokenize_tf` (a TF op; the
  same ids as ``Tokenizer.encode``). Elements have the structure of
  :meth:`rmcompress.data.pipeline.EncodedData.dataset`: pointwise ``(ids, labels)``, pairwise
  ``{"chosen", "rejected", "margin"}``.
- :func:`split_streamed` is what training calls: ``(data, train, validation)`` like the in-memory
  load and split; :meth:`StreamedData.encode` gives the training side as a
  :class:`StreamedEncoded` (its ``len`` is every training row, its ``dataset`` the stream, its
  arrays the tokenised training sample).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from rmcompress._keras import tf
from rmcompress.config.choices import COLUMN_SETTINGS
from rmcompress.config.streaming import SHUFFLE_ROWS, TRAIN_SAMPLE_ROWS, VAL_ROWS, VOCAB_SAMPLE_ROWS
from rmcompress.data.loaders import (MAX_CHARS, Cleaner, PairwiseData, PointwiseData, check_label_kind,
                                     check_label_values, pairwise_columns, pairwise_rows, pointwise_columns,
                                     pointwise_rows)
from rmcompress.data.pipeline import EncodedData, batch_by_length, encode, grouping
from rmcompress.data.shards import TFRECORD, Shards, parquet_chunks, resolve, shard_format, text_chunks
from rmcompress.data.split import hash_validation, pair_key, streamed_mode
from rmcompress.data.tables import Table
from rmcompress.data.tfrecords import tfrecord_chunks
from rmcompress.data.tokenizer import Tokenizer
from rmcompress.errors import DataError, UsageError


def read_chunks(path: Path) -> Iterator[pd.DataFrame]:
    """Frames of rows of one shard, with ``__line__`` (:mod:`rmcompress.data.shards`)."""
    fmt, gz = shard_format(path)
    if fmt == TFRECORD:
        return tfrecord_chunks(path, gz)
    if fmt == ".parquet":
        return parquet_chunks(path, gz)
    return text_chunks(path, fmt, gz)


def first_table(data) -> Table:
    """The first rows of streamed ``data`` (its first non-empty chunk): enough to tell the task
    from the columns."""
    for path in resolve(data).paths:
        for frame in read_chunks(path):
            if len(frame):
                return Table(frame, str(path))
    raise DataError(f"{data}: no rows in any shard")


@dataclass
class _Rows:
    """The usable rows of one chunk: ``texts`` (pointwise) or ``chosen``/``rejected``, ``values``
    (labels or margins) and ``keys`` (what the split hashes)."""

    texts: list
    chosen: list
    rejected: list
    values: np.ndarray
    skipped: dict
    keys: list


def _check_chunk(frame: pd.DataFrame, path: Path, task: str, columns: dict, clean: Cleaner,
                 label_kind: str | None) -> tuple[_Rows, str | None]:
    """``(rows, label kind of the chunk)``: ``frame`` checked by the loaders' rules."""
    table = Table(frame, str(path))
    if task == "pointwise":
        tcol, lcol = pointwise_columns(table, columns.get("text_column"), columns.get("label_column"))
        texts, labels, empty = pointwise_rows(frame, tcol, lcol, clean)
        kind = check_label_kind(labels, label_kind, str(path)) if labels else label_kind
        values = np.array([v for v, _ in labels], np.float32)
        return _Rows(texts, [], [], values, {"empty_text": empty} if empty else {}, texts), kind
    cols = pairwise_columns(table, None, columns.get("prompt_column"), columns.get("chosen_column"),
                            columns.get("rejected_column"))
    chosen, rejected, margin, skipped = pairwise_rows(frame, cols, clean)
    keys = [pair_key(c, r) for c, r in zip(chosen, rejected)]
    return _Rows([], chosen, rejected, np.asarray(margin, np.float32), skipped, keys), None


def _loaded(task: str, source: str, label_kind: str | None, texts=(), chosen=(), rejected=(), values=()):
    values = np.asarray(values, np.float32)
    if task == "pointwise":
        return PointwiseData(list(texts), values, label_kind or "real", source)
    return PairwiseData(list(chosen), list(rejected), values, source)


@dataclass
class StreamedData:
    """Streamed data after :func:`scan` (module docstring): counts, samples, and the stream."""

    shards: Shards
    task: str
    fraction: float
    columns: dict
    max_chars: int = MAX_CHARS
    label_kind: str | None = None
    n_rows: int = 0
    n_val: int = 0
    skipped: dict = field(default_factory=dict)
    truncated: int = 0
    fingerprint: str = ""
    vocab_sample: list = field(default_factory=list)
    val: PointwiseData | PairwiseData | None = None
    train_sample: PointwiseData | PairwiseData | None = None
    #: what :func:`rmcompress.data.split.resolve_mode` reads: the rows are not all in memory
    streamed = True

    @property
    def source(self) -> str:
        return self.shards.source

    @property
    def n_train(self) -> int:
        return self.n_rows - self.n_val

    def __len__(self) -> int:
        return self.n_rows

    @property
    def report(self) -> dict:
        """``report.json`` entries of a streamed run."""
        return {"streamed": True, "shards": len(self.shards.paths), "n_rows": self.n_rows,
                "n_validation_rows": self.n_val}

    def chunks(self, label_kind: str | None = None) -> Iterator[tuple[_Rows, np.ndarray, Cleaner]]:
        """``(rows, validation mask, cleaner)`` of each chunk of each shard, in shard order."""
        for path in self.shards.paths:
            clean = Cleaner(str(path), self.max_chars)
            for frame in read_chunks(path):
                if not len(frame):
                    continue
                rows, kind = _check_chunk(frame, path, self.task, self.columns, clean, label_kind)
                if kind == "real":
                    self.label_kind = "real"
                yield rows, hash_validation(rows.keys, self.fraction), clean

    def _split_rows(self, split: str):
        """Generator of one split's rows, a chunk at a time: ``(texts, labels)`` or
        ``(chosen, rejected, margins)`` as numpy arrays."""
        want_val = split == "val"
        for rows, mask, _ in self.chunks(self.label_kind if self.label_kind == "binary" else None):
            idx = np.flatnonzero(mask if want_val else ~mask)
            if not len(idx):
                continue
            if self.task == "pointwise":
                yield np.asarray(rows.texts, object)[idx], rows.values[idx]
            else:
                yield np.asarray(rows.chosen, object)[idx], np.asarray(rows.rejected, object)[idx], rows.values[idx]

    def dataset(self, split: str, tokenizer: Tokenizer, batch_size: int, shuffle: bool = False, seed: int = 0,
                repeat: bool = False, drop_remainder: bool = False, group_by_length: bool | None = None,
                slack: int | None = None) -> tf.data.Dataset:
        """Tokenised batches of the ``train`` or ``val`` rows (module docstring); ``group_by_length``:
        tokenised rows regrouped by length (:func:`rmcompress.data.pipeline.batch_by_length`)."""
        if split not in ("train", "val"):
            raise UsageError(f"split {split!r} unknown; allowed: train, val")
        group_by_length, slack = grouping(group_by_length, slack, repeat)
        text = tf.TensorSpec([None], tf.string)
        number = tf.TensorSpec([None], tf.float32)
        signature = (text, number) if self.task == "pointwise" else (text, text, number)
        ds = tf.data.Dataset.from_generator(lambda: self._split_rows(split), output_signature=signature).unbatch()
        if shuffle:
            ds = ds.shuffle(SHUFFLE_ROWS, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        tokenizer.layer  # built eagerly, before tf.data traces the map
        if self.task == "pointwise":
            ds = ds.map(lambda t, y: (tokenizer.tokenize_tf(t), y), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda c, r, m: {"chosen": tokenizer.tokenize_tf(c), "rejected": tokenizer.tokenize_tf(r),
                                         "margin": m}, num_parallel_calls=tf.data.AUTOTUNE)
        if group_by_length:
            ds = batch_by_length(ds.unbatch(), batch_size, drop_remainder, tokenizer.seq_len, slack)
        return ds.prefetch(tf.data.AUTOTUNE)

    def encode(self, tokenizer: Tokenizer) -> "StreamedEncoded":
        """The training side for ``fit``: the stream, with the training sample tokenised."""
        sample = encode(self.train_sample, tokenizer)
        return StreamedEncoded(**vars(sample), stream=self, tokenizer=tokenizer)


@dataclass
class StreamedEncoded(EncodedData):
    """Streamed training rows as training takes them: ``len`` is the number of training rows,
    :meth:`dataset` the tokenised stream (:meth:`StreamedData.dataset`); the arrays hold the
    first ``TRAIN_SAMPLE_ROWS`` training rows (building the model, ``samples.npz``, gate ranking)."""

    stream: StreamedData | None = None
    tokenizer: Tokenizer | None = None

    def __len__(self) -> int:
        return self.stream.n_train

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, repeat: bool = False,
                drop_remainder: bool = False, group_by_length: bool | None = None,
                slack: int | None = None) -> tf.data.Dataset:
        return self.stream.dataset("train", self.tokenizer, batch_size, shuffle, seed, repeat, drop_remainder,
                                   group_by_length, slack)


def scan(data, task: str, fraction: float, columns: dict | None = None, label_kind: str | None = None,
         max_chars: int = MAX_CHARS) -> StreamedData:
    """One checking pass over streamed ``data`` (module docstring); ``fraction`` of the rows (by
    hash) are validation rows (0: none; 1: all). ``label_kind`` ``binary`` requires 0/1 labels."""
    shards = resolve(data)
    s = StreamedData(shards, task, float(fraction), {k: v for k, v in (columns or {}).items()
                                                     if k in COLUMN_SETTINGS and v is not None},
                     int(max_chars), label_kind)
    digest = hashlib.sha256()
    val = {"texts": [], "chosen": [], "rejected": [], "values": []}
    sample = {"texts": [], "chosen": [], "rejected": [], "values": []}
    label_values: set = set()
    truncated = {}
    for rows, mask, clean in s.chunks(label_kind):
        truncated[clean.src] = clean.truncated
        for k, n in rows.skipped.items():
            s.skipped[k] = s.skipped.get(k, 0) + n
        n = len(rows.keys)
        s.n_rows += n
        s.n_val += int(mask.sum())
        for t in (rows.texts or [x for pair in zip(rows.chosen, rows.rejected) for x in pair]):
            b = t.encode("utf-8")
            digest.update(len(b).to_bytes(8, "little"))
            digest.update(b)
        digest.update(np.ascontiguousarray(rows.values).tobytes())
        if task == "pointwise" and len(label_values) < 2:
            label_values.update(np.unique(rows.values).tolist())
        for i in range(n):
            if mask[i]:
                _keep(val, rows, i, VAL_ROWS)
            else:
                _keep(sample, rows, i, TRAIN_SAMPLE_ROWS)
                if len(s.vocab_sample) < VOCAB_SAMPLE_ROWS * (1 if task == "pointwise" else 2):
                    s.vocab_sample.extend([rows.texts[i]] if task == "pointwise" else [rows.chosen[i], rows.rejected[i]])
    s.truncated = sum(truncated.values())
    s.fingerprint = digest.hexdigest()
    if s.label_kind is None and task == "pointwise":
        s.label_kind = "binary"  # every label seen was 0 or 1
    _check_counts(s, label_values)
    s.val = _loaded(task, s.source, s.label_kind, **val)
    s.train_sample = _loaded(task, s.source, s.label_kind, **sample)
    return s


def _keep(into: dict, rows: _Rows, i: int, limit: int) -> None:
    if len(into["values"]) >= limit:
        return
    if rows.texts:
        into["texts"].append(rows.texts[i])
    else:
        into["chosen"].append(rows.chosen[i])
        into["rejected"].append(rows.rejected[i])
    into["values"].append(rows.values[i])


def _check_counts(s: StreamedData, label_values: set) -> None:
    """Errors naming the source when no rows are usable, when a side of the split is empty, or
    (pointwise training) when every label is one value."""
    src = s.source
    if not s.n_rows:
        empty, same = s.skipped.get("empty_text", 0), s.skipped.get("chosen_equals_rejected", 0)
        if s.task == "pointwise":
            raise DataError(f"{src}: all {empty} texts are empty or whitespace")
        raise DataError(f"{src}: no usable pairs ({empty} with empty text, {same} with chosen == rejected)")
    if s.fraction >= 1:
        return
    if s.fraction > 0 and (not s.n_val or not s.n_train):
        raise DataError(f"{src}: --split hash puts {s.n_val} of {s.n_rows} rows in validation at fraction "
                        f"{s.fraction:g}; give more rows or --val-data FILE")
    if s.task == "pointwise":
        check_label_values(sorted(label_values), s.n_rows, s.label_kind, src)


def split_streamed(data, cfg, validation=None) -> tuple[StreamedData, StreamedData, PointwiseData | PairwiseData]:
    """``(data, train, validation)`` of a training run with settings ``cfg`` (a
    :class:`~rmcompress.config.training.TrainConfig`) on streamed ``data``: scanned with its
    columns (0/1 labels required when its loss is ``bce``), the validation rows by hash
    (``auto``/``hash``; other split modes are a :class:`UsageError`), or ``validation`` (loaded
    data, or streamed: its first ``VAL_ROWS`` rows) and every row of ``data`` training."""
    source = str(data)
    if cfg.distill.teacher:
        raise UsageError(f"{source}: distillation (--teacher) needs the training data in memory; this data is "
                         "streamed (a directory, a glob or a large file)")
    d = cfg.data
    fraction = 0.0 if validation is not None else d.val_fraction
    if fraction:
        streamed_mode(d.split_mode, source)
    columns = {k: getattr(d, k) for k in COLUMN_SETTINGS}
    label_kind = "binary" if cfg.task == "pointwise" and cfg.loss == "bce" else None
    stream = scan(data, cfg.task, fraction, columns, label_kind)
    if validation is None:
        return stream, stream, stream.val
    if not isinstance(validation, (PointwiseData, PairwiseData)):
        validation = scan(validation, cfg.task, 1.0, columns).val
    if validation.task != cfg.task:
        raise UsageError(f"validation data is {validation.task} but the task is {cfg.task}")
    return stream, stream, validation
