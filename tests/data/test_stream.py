"""Streamed data: the same rows, checks, split and token ids as the in-memory path, read shard by
shard; training on a directory of shards."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest

import rmcompress.data.shards as shards
from rmcompress.data.loaders import load_data
from rmcompress.data.pipeline import encode
from rmcompress.data.split import resolve_mode, split_data
from rmcompress.data.stream import first_table, scan, split_streamed
from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
from rmcompress.errors import DataError, UsageError
from tests.helpers import tiny_config

WORDS = "good bad great awful fine movie plot actor boring fun dull superb weak".split()


def _rows(n, seed=0):
    rng = np.random.RandomState(seed)
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, rng.randint(2, 9)))
        rows.append({"text": text, "label": int("good" in text or "great" in text)})
    rows[3]["text"] = "  "  # skipped and counted
    return rows


def _pairs(n, seed=0):
    rng = np.random.RandomState(seed)
    rows = [{"prompt": f"question {i}?", "chosen": " ".join(rng.choice(WORDS, 5)) + " superb",
             "rejected": " ".join(rng.choice(WORDS, 5)) + " awful"} for i in range(n)]
    rows[2]["rejected"] = rows[2]["chosen"]  # chosen == rejected: skipped
    return rows


def _jsonl_shards(directory, rows, parts=3, gz=False):
    directory.mkdir()
    size = -(-len(rows) // parts)
    for k in range(parts):
        text = "".join(json.dumps(r) + "\n" for r in rows[k * size:(k + 1) * size])
        path = directory / f"part-{k}.jsonl{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    whole = directory.parent / f"{directory.name}-whole.jsonl"
    whole.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return whole


def _streamed_rows(stream):
    texts, values = [], []
    for rows, _, _ in stream.chunks():
        texts += rows.texts or [c + "|" + r for c, r in zip(rows.chosen, rows.rejected)]
        values += rows.values.tolist()
    return texts, values


def test_shards_read_the_rows_the_in_memory_loader_reads(tmp_path):
    rows = _rows(90)
    whole = _jsonl_shards(tmp_path / "jl", rows)
    tsv = tmp_path / "tsv"
    tsv.mkdir()
    for k in range(3):
        with gzip.open(tsv / f"p{k}.tsv.gz", "wt") as f:
            f.write("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows[k * 30:(k + 1) * 30]))
    loaded = load_data(whole, "pointwise")
    for source in (tmp_path / "jl", str(tsv / "*.tsv.gz")):
        stream = scan(source, "pointwise", 0.0)
        assert _streamed_rows(stream) == (loaded.texts, loaded.labels.tolist())
        assert stream.skipped == loaded.skipped == {"empty_text": 1} and stream.n_rows == len(loaded)
        assert stream.label_kind == "binary" and stream.vocab_sample == loaded.texts
    pairs = _pairs(40)
    whole = _jsonl_shards(tmp_path / "pw", pairs, gz=True)
    loaded = load_data(whole, "pairwise")
    stream = scan(tmp_path / "pw", "pairwise", 0.0)
    assert _streamed_rows(stream)[0] == [c + "|" + r for c, r in zip(loaded.chosen, loaded.rejected)]
    assert stream.skipped == loaded.skipped == {"chosen_equals_rejected": 1}
    assert loaded.chosen[0].startswith("question 0?\n")  # the prompt joined as load_pairwise joins it


def test_tfrecord_and_parquet_shards(tmp_path):
    from rmcompress._keras import tf

    rows = _rows(30)
    d = tmp_path / "mixed"
    d.mkdir()
    pd.DataFrame(rows[:15]).to_parquet(d / "a.parquet")
    with tf.io.TFRecordWriter(str(d / "b.tfrecord.gz"), options="GZIP") as w:
        for r in rows[15:]:
            w.write(tf.train.Example(features=tf.train.Features(feature={
                "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[r["text"].encode()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[r["label"]]))})).SerializeToString())
    stream = scan(d, "pointwise", 0.0)
    expect = [(r["text"], float(r["label"])) for r in rows if r["text"].strip()]
    assert list(zip(*_streamed_rows(stream))) == expect
    assert sorted(first_table(d).columns) == ["label", "text"]
    with tf.io.TFRecordWriter(str(tmp_path / "bad.tfrecord")) as w:
        w.write(tf.train.Example(features=tf.train.Features(feature={
            "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a", b"b"]))})).SerializeToString())
    with pytest.raises(DataError, match=r"bad\.tfrecord:1: feature 'text' holds 2 values"):
        scan(tmp_path / "bad.tfrecord", "pointwise", 0.0)


def test_a_bad_row_names_its_shard_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "CHUNK_ROWS", 4)
    rows = _rows(30)
    rows[22]["label"] = "oops"
    _jsonl_shards(tmp_path / "jl", rows)  # 10 rows a shard: row 22 is line 3 of part-2
    with pytest.raises(DataError, match=r"part-2\.jsonl:3: label 'oops' is not a number"):
        scan(tmp_path / "jl", "pointwise", 0.1)
    rows[22]["label"] = 0.5
    _jsonl_shards(tmp_path / "real", rows)
    with pytest.raises(DataError, match=r"part-2\.jsonl:3: label 0\.5 is out of range for a binary task"):
        scan(tmp_path / "real", "pointwise", 0.1, label_kind="binary")
    assert scan(tmp_path / "real", "pointwise", 0.1).label_kind == "real"


def test_hash_split_is_stable_disjoint_and_the_in_memory_hash_split(tmp_path):
    rows = _rows(400)
    whole = _jsonl_shards(tmp_path / "jl", rows)
    a, b = scan(tmp_path / "jl", "pointwise", 0.2), scan(tmp_path / "jl", "pointwise", 0.2)
    assert a.val.texts == b.val.texts and a.fingerprint == b.fingerprint
    assert 40 < a.n_val < 120 and a.n_val == len(a.val) and a.n_train == a.n_rows - a.n_val
    tr, va = split_data(load_data(whole, "pointwise"), 0.2, mode="hash")
    assert va.texts == a.val.texts and tr.texts[:len(a.train_sample)] == a.train_sample.texts
    assert not set(tr.texts) & set(va.texts)
    assert resolve_mode(a, "auto") == ("hash", f"{tmp_path / 'jl'}: streamed; validation rows chosen by a hash "
                                               "of their text (split hash)")
    for mode in ("random", "disjoint", "sentences"):
        with pytest.raises(UsageError, match=f"--split {mode} needs the data in memory"):
            split_streamed(tmp_path / "jl", tiny_config(task="pointwise", split_mode=mode))


def test_streamed_batches_hold_the_ids_encode_gives(tmp_path):
    _jsonl_shards(tmp_path / "pw", _pairs(60))
    stream = scan(tmp_path / "pw", "pairwise", 0.25)
    tok = Tokenizer.train(stream.vocab_sample, 120, TokenizerConfig(seq_len=8, keep="end"))
    batches = list(stream.dataset("train", tok, 16))
    got = {k: np.concatenate([b[k].numpy() for b in batches]) for k in ("chosen", "rejected", "margin")}
    every = scan(tmp_path / "pw", "pairwise", 0.0).train_sample  # every row, in file order
    enc = encode(every, tok)
    held = set(stream.val.chosen)
    train_rows = np.array([c not in held for c in every.chosen])
    np.testing.assert_array_equal(got["chosen"], enc.chosen[train_rows])
    np.testing.assert_array_equal(got["rejected"], enc.rejected[train_rows])
    assert got["chosen"].shape[1] == 8 and len(got["margin"]) == stream.n_train


def test_train_on_a_directory_of_shards_writes_a_model_directory(tmp_path):
    import json as js

    from rmcompress.training.trainer import train

    _jsonl_shards(tmp_path / "jl", _rows(200))
    out = tmp_path / "model"
    result = train(tmp_path / "jl", tiny_config(task="pointwise", max_steps=3), out)
    report = js.loads((out / "report.json").read_text())
    assert (out / "model.keras").is_file() and report["split"] == "hash" and report["streamed"] is True
    assert report["n_train"] + report["n_validation_rows"] == report["n_rows"] == 199
    assert report["skipped_rows"] == {"empty_text": 1} and report["steps"] == 3
    assert result.report["n_examples"] == report["n_validation_rows"]
