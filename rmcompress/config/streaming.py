"""When training data is streamed instead of loaded, and the bounds that keep a streamed run's
memory flat in the size of the data (docs/data.md, "Streamed data").

A single file of at most :data:`STREAM_FILE_BYTES` bytes on disk (compressed size for ``.gz``) is
loaded into memory as a whole; a larger file, a directory of shards or a glob is streamed. What a
streamed run holds at once: one chunk of :data:`CHUNK_ROWS` rows of one shard, a shuffle buffer
of :data:`SHUFFLE_ROWS` rows, the first :data:`VOCAB_SAMPLE_ROWS` training rows (the tokenizer's
vocabulary is trained on them), the first :data:`VAL_ROWS` validation rows (tokenised; the
validation metrics are measured on them) and the first :data:`TRAIN_SAMPLE_ROWS` training rows
(tokenised: building the model, ``samples.npz``, gate ranking). A row belongs to the validation
split when ``crc32(utf-8 key) % HASH_BUCKETS < fraction * HASH_BUCKETS`` (the key: the text; a
pair's chosen and rejected texts joined by a NUL).
"""
from __future__ import annotations

#: a single file larger than this (bytes on disk) is streamed
STREAM_FILE_BYTES = 128 * 2 ** 20
#: rows read from a shard at a time
CHUNK_ROWS = 10_000
#: rows of the shuffle buffer of the streamed training rows
SHUFFLE_ROWS = 10_000
#: training rows (first in shard order) the WordPiece vocabulary is trained on
VOCAB_SAMPLE_ROWS = 100_000
#: validation rows (first in shard order) kept in memory and measured; the rest are held out unmeasured
VAL_ROWS = 20_000
#: training rows (first in shard order) kept tokenised in memory
TRAIN_SAMPLE_ROWS = 1_024
#: buckets of the validation hash
HASH_BUCKETS = 10_000
