"""Shards: which files a file, a directory or a glob names, and their rows read chunk by chunk
with the same line numbers the whole-file reader gives."""
import gzip
import json

import pandas as pd
import pytest

import rmcompress.data.shards as shards
from rmcompress.data.formats import LINE_COLUMN, read_table
from rmcompress.errors import DataError


def _chunks(path, rows):
    fmt, gz = shards.shard_format(path)
    if fmt == ".parquet":
        return list(shards.parquet_chunks(path, gz, rows))
    return list(shards.text_chunks(path, fmt, gz, rows))


def _same_rows(path, rows, lines=True):
    whole = read_table(path).reset_index(drop=True)
    parts = pd.concat(_chunks(path, rows), ignore_index=True)
    assert len(parts) == len(whole)
    columns = [c for c in whole.columns if lines or c != LINE_COLUMN]
    pd.testing.assert_frame_equal(parts[columns], whole[columns], check_dtype=False)
    return parts


def test_chunks_keep_the_lines_of_the_whole_file(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text('text,label\n"one",1\n\n"two, with comma",0\n"three, ""quoted""",1\nfour,0\n\nfive,1\nsix,0\n')
    assert _same_rows(csv, 2)[LINE_COLUMN].tolist() == [2, 4, 5, 6, 8, 9]
    # a quoted field spanning lines stays one record; a block ends only after it
    csv.write_text('text,label\n"one",1\n"two\nlines",0\n"three\nlong\nlines",1\nfour,0\n\nfive,1\n')
    for rows in (1, 2, 3):
        _same_rows(csv, rows, lines=False)
    tsv = tmp_path / "b.tsv.gz"
    with gzip.open(tsv, "wt") as f:
        f.write("\n".join(["text\tlabel"] + [f"row {i}\t{i % 2}" for i in range(7)]) + "\n\nlast\t1\n")
    parts = _same_rows(tsv, 3)
    assert parts[LINE_COLUMN].tolist() == [2, 3, 4, 5, 6, 7, 8, 10]
    jl = tmp_path / "c.jsonl"
    jl.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i % 2}) if i != 3 else "" for i in range(8)) + "\n")
    parts = _same_rows(jl, 2)
    assert parts[LINE_COLUMN].tolist() == [1, 2, 3, 5, 6, 7, 8]
    pq = tmp_path / "d.parquet"
    pd.DataFrame({"text": [f"t{i}" for i in range(5)], "label": [0, 1, 0, 1, 1]}).to_parquet(pq)
    assert _same_rows(pq, 2)[LINE_COLUMN].tolist() == [1, 2, 3, 4, 5]


def test_a_bad_row_is_named_by_its_shard_and_line(tmp_path):
    jl = tmp_path / "part-1.jsonl"
    jl.write_text("".join(json.dumps({"text": f"t{i}", "label": 1}) + "\n" for i in range(5)) + "{oops\n")
    with pytest.raises(DataError, match=r"part-1\.jsonl:6: malformed JSON line"):
        _chunks(jl, 2)
    bad = tmp_path / "part-2.csv"
    bad.write_text("text,label\n" + "".join(f"t{i},1\n" for i in range(4)) + "x,1,extra\n")
    with pytest.raises(DataError, match=r"part-2\.csv: malformed CSV .*line 6"):
        _chunks(bad, 2)
    utf = tmp_path / "part-3.tsv"
    utf.write_bytes(b"text\tlabel\n" + b"".join(b"t%d\t1\n" % i for i in range(4)) + b"\xff\t1\n")
    with pytest.raises(DataError, match=r"part-3\.tsv:6: not valid UTF-8"):
        _chunks(utf, 2)


def test_resolve_lists_shards_of_a_directory_and_a_glob(tmp_path):
    for name in ("b.jsonl", "a.csv.gz", "c.tfrecord", ".hidden.csv", "README.md"):
        (tmp_path / name).write_bytes(b"x")
    got = shards.resolve(tmp_path)
    assert [p.name for p in got.paths] == ["a.csv.gz", "b.jsonl", "c.tfrecord"] and got.source == str(tmp_path)
    assert [p.name for p in shards.resolve(str(tmp_path / "*.jsonl")).paths] == ["b.jsonl"]
    with pytest.raises(DataError, match="no file matches"):
        shards.resolve(str(tmp_path / "*.parquet"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no data files"):
        shards.resolve(empty)
    with pytest.raises(DataError, match="unknown data format '.md'"):
        shards.resolve(str(tmp_path / "*.md"))


def test_only_large_files_directories_globs_and_tfrecords_stream(tmp_path, monkeypatch):
    small = tmp_path / "small.csv"
    small.write_text("text,label\na,1\n")
    assert not shards.is_streamed(small) and not shards.is_streamed(str(small))
    assert shards.is_streamed(tmp_path) and shards.is_streamed(str(tmp_path / "*.csv"))
    (tmp_path / "x.tfrecord.gz").write_bytes(b"")
    assert shards.is_streamed(tmp_path / "x.tfrecord.gz")
    assert not shards.is_streamed(pd.DataFrame({"streamed": [True]}))
    monkeypatch.setattr(shards, "STREAM_FILE_BYTES", small.stat().st_size - 1)
    assert shards.is_streamed(small)
