"""Bad data -> exit code 2 and ONE line on stderr naming the place (file, line, column); no traceback
unless ``--debug``. Through the CLI in this process (``cli`` fixture), plus one real subprocess.

Also: rows that are skipped (empty texts, chosen == rejected) are counted in ``report.json`` and in a
note on stderr; megabyte texts are cut, with bounded memory.
"""
from __future__ import annotations

import gzip
import json
import tracemalloc

import pytest

from rmcompress.errors import DataError
from tests.helpers import TINY_TRAIN_FLAGS, rmcompress_subprocess


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def _train(cli, data, out, task="pointwise", *extra):
    return cli("train", "--data", data, "--task", task, "--out", out, *TINY_TRAIN_FLAGS, *extra)


def _write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _rows(n=40, bad_line=None, bad_row=None):
    """A TSV with n good rows; row ``bad_line`` (1-based file line, header = 1) replaced."""
    rows = ["sentence\tlabel"] + [f"row number {i} is {'good' if i % 2 else 'bad'}\t{i % 2}" for i in range(n)]
    if bad_line is not None:
        rows[bad_line - 1] = bad_row
    return "\n".join(rows) + "\n"


# -- the file itself ------------------------------------------------------------------------------
def test_missing_file(cli, tmp_path):
    rc, _, err = _train(cli, tmp_path / "nope.tsv", tmp_path / "m")
    assert rc == 2
    assert _one_line(err) == f"rmcompress train: error: {tmp_path / 'nope.tsv'}: no such file"


def test_empty_file(cli, tmp_path):
    rc, _, err = _train(cli, _write(tmp_path / "e.tsv", ""), tmp_path / "m")
    assert rc == 2 and "e.tsv: file is empty" in _one_line(err)


def test_header_only_and_blank_file(cli, tmp_path):
    rc, _, err = _train(cli, _write(tmp_path / "h.tsv", "sentence\tlabel\n"), tmp_path / "m")
    assert rc == 2 and "h.tsv: file has a header but no rows" in _one_line(err)
    rc, _, err = _train(cli, _write(tmp_path / "b.jsonl", "\n  \n"), tmp_path / "m")
    assert rc == 2 and "b.jsonl: file has no data" in _one_line(err)


def test_directory_instead_of_file(cli, tmp_path):
    from rmcompress.data.loaders import load_data

    (tmp_path / "d.tsv").mkdir()
    with pytest.raises(DataError, match="d.tsv: is a directory, expected a data file"):
        load_data(tmp_path / "d.tsv")  # a loader reads one file
    rc, _, err = _train(cli, tmp_path / "d.tsv", tmp_path / "m")  # train streams a directory's shards
    assert rc == 2 and "d.tsv: directory holds no data files (.csv, .tsv, .jsonl" in _one_line(err)


def test_unknown_extension(cli, tmp_path):
    rc, _, err = _train(cli, _write(tmp_path / "data.xlsx", "x"), tmp_path / "m")
    line = _one_line(err)
    assert rc == 2 and "data.xlsx: unknown data format '.xlsx'" in line and ".csv, .tsv, .jsonl" in line


def test_corrupt_gzip(cli, tmp_path):
    rc, _, err = _train(cli, _write(tmp_path / "d.tsv.gz", b"\x1f\x8b\x08\x00garbage"), tmp_path / "m")
    assert rc == 2 and "d.tsv.gz: not a valid gzip file" in _one_line(err)


def test_missing_columns_lists_the_columns_found(cli, tmp_path):
    rc, _, err = _train(cli, _write(tmp_path / "c.csv", "review_body,stars\nnice,1\n"), tmp_path / "m")
    line = _one_line(err)
    assert rc == 2 and "cannot find a text column" in line and "['review_body', 'stars']" in line
    assert "--text-column" in line
    rc, _, err = _train(cli, tmp_path / "c.csv", tmp_path / "m", "pointwise", "--text-column", "review_body")
    line = _one_line(err)
    assert rc == 2 and "cannot find a label column" in line and "--label-column" in line
    rc, _, err = _train(cli, tmp_path / "c.csv", tmp_path / "m", "pointwise", "--text-column", "body")
    assert rc == 2 and "no text column 'body'; columns found: ['review_body', 'stars']" in _one_line(err)
    rc, _, err = _train(cli, _write(tmp_path / "p.jsonl", '{"good": "a", "bad": "b"}\n'), tmp_path / "m", "pairwise")
    line = _one_line(err)
    assert rc == 2 and "missing ['chosen', 'rejected']" in line and "['good', 'bad']" in line


# -- rows -------------------------------------------------------------------------------------------
def test_whitespace_texts_are_skipped_and_counted(cli, tmp_path):
    text = _rows(40).replace("row number 3 is good", "   ").replace("row number 8 is bad", "")
    out = tmp_path / "m"
    rc, _, err = _train(cli, _write(tmp_path / "w.tsv", text), out)
    assert rc == 0, err
    assert "skipped 2 rows (2 with empty or whitespace-only text)" in err
    report = json.loads((out / "report.json").read_text())
    assert report["skipped_rows"] == {"empty_text": 2}
    assert report["n_train"] + report["n_examples"] == 38


def test_all_texts_empty_fails(cli, tmp_path):
    rc, _, err = _train(cli, _write(tmp_path / "a.tsv", "sentence\tlabel\n  \t1\n\t0\n"), tmp_path / "m")
    assert rc == 2 and "a.tsv: all 2 texts are empty or whitespace" in _one_line(err)


@pytest.mark.parametrize("cell, expect", [
    ("nan", "label is missing or NaN"), ("", "label is missing"), ("abc", "label 'abc' is not a number"),
    ("1e300", "label 1e300 is out of range"), ("inf", "label inf is out of range"),
])
def test_bad_labels_name_the_line(cli, tmp_path, cell, expect):
    data = _write(tmp_path / "l.tsv", _rows(20, bad_line=7, bad_row=f"some text\t{cell}"))
    rc, _, err = _train(cli, data, tmp_path / "m")
    line = _one_line(err)
    assert rc == 2 and f"l.tsv:7: {expect}" in line, line


def test_out_of_range_label_for_a_binary_loss(cli, tmp_path):
    data = _write(tmp_path / "b.tsv", _rows(20, bad_line=5, bad_row="three stars\t3"))
    rc, _, err = _train(cli, data, tmp_path / "m", "pointwise", "--loss", "bce")
    assert rc == 2 and "b.tsv:5: label 3 is out of range for a binary task (0 or 1)" in _one_line(err)


def test_bad_margin_names_the_line(cli, tmp_path):
    rows = [json.dumps({"chosen": f"good {i}", "rejected": f"bad {i}", "margin": 1.0}) for i in range(10)]
    rows[3] = json.dumps({"chosen": "good", "rejected": "bad", "margin": "wide"})
    rc, _, err = _train(cli, _write(tmp_path / "m.jsonl", "\n".join(rows)), tmp_path / "m", "pairwise")
    assert rc == 2 and "m.jsonl:4: margin 'wide' is not a number" in _one_line(err)


def test_non_utf8_names_the_line(cli, tmp_path):
    raw = _rows(20).encode().replace(b"row number 9 is good", b"caf\xe9 latin-1")
    rc, _, err = _train(cli, _write(tmp_path / "u.tsv", raw), tmp_path / "m")
    assert rc == 2 and "u.tsv:11: not valid UTF-8 (byte 0xe9)" in _one_line(err)
    rc, _, err = _train(cli, _write(tmp_path / "u.tsv.gz", gzip.compress(raw)), tmp_path / "m")
    assert rc == 2 and "u.tsv.gz:11: not valid UTF-8" in _one_line(err)


def test_malformed_json_line_names_the_line(cli, tmp_path):
    rows = [json.dumps({"chosen": f"good {i}", "rejected": f"bad {i}"}) for i in range(10)]
    rows[5] = '{"chosen": "good", "rejected": '
    rc, _, err = _train(cli, _write(tmp_path / "j.jsonl", "\n".join(rows)), tmp_path / "m", "pairwise")
    assert rc == 2 and "j.jsonl:6: malformed JSON line" in _one_line(err)
    rows[5] = "[1, 2]"
    rc, _, err = _train(cli, _write(tmp_path / "j.jsonl", "\n".join(rows)), tmp_path / "m", "pairwise")
    assert rc == 2 and "j.jsonl:6: JSON line is not an object" in _one_line(err)


def test_chosen_equals_rejected_is_skipped_and_counted(cli, tmp_path, pairwise_file):
    rows = [json.loads(ln) for ln in pairwise_file.read_text().splitlines()[:60]]
    for r in rows[:3]:
        r["rejected"] = r["chosen"]
    out = tmp_path / "m"
    data = _write(tmp_path / "same.jsonl", "\n".join(json.dumps(r) for r in rows))
    rc, _, err = _train(cli, data, out, "pairwise")
    assert rc == 0, err
    assert "skipped 3 rows (3 whose chosen text equals the rejected one)" in err
    assert json.loads((out / "report.json").read_text())["skipped_rows"] == {"chosen_equals_rejected": 3}


def test_pairwise_file_with_pointwise_task_and_the_reverse(cli, tmp_path, pointwise_file, pairwise_file):
    rc, _, err = _train(cli, pairwise_file, tmp_path / "m", "pointwise")
    line = _one_line(err)
    assert rc == 2 and "looks like pairwise data" in line and "use --task pairwise" in line
    rc, _, err = _train(cli, pointwise_file, tmp_path / "m", "pairwise")
    line = _one_line(err)
    assert rc == 2 and "looks like pointwise data" in line and "use --task pointwise" in line


# -- huge texts -------------------------------------------------------------------------------------
def test_megabyte_text_is_cut_with_bounded_memory(cli, tmp_path):
    from rmcompress.data.loaders import MAX_CHARS, load_data

    huge = "word " * 1_000_000  # 5 MB in one cell
    text = _rows(40, bad_line=4, bad_row=f"{huge}\t1")
    data = _write(tmp_path / "huge.tsv", text)
    del text
    tracemalloc.start()
    loaded = load_data(data, "pointwise")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert max(len(t) for t in loaded.texts) == MAX_CHARS and loaded.truncated == 1
    assert peak < 80 * 2 ** 20, f"loading a 5 MB file peaked at {peak / 2 ** 20:.0f} MB"

    out = tmp_path / "m"
    rc, _, err = _train(cli, data, out)
    assert rc == 0, err
    assert "cut 1 over-long texts" in err
    assert json.loads((out / "report.json").read_text())["truncated_texts"] == 1


# -- --debug and a real process -------------------------------------------------------------------
def test_debug_shows_the_traceback(cli, tmp_path):
    rc, _, err = _train(cli, tmp_path / "nope.tsv", tmp_path / "m", "pointwise", "--debug")
    assert rc == 2 and "Traceback" in err and "DataError" in err
    assert err.strip().splitlines()[-1].endswith("nope.tsv: no such file")


def test_real_process_prints_one_line_and_exits_2(tmp_path):
    bad = _write(tmp_path / "l.tsv", _rows(20, bad_line=9, bad_row="text\tmaybe"))
    proc = rmcompress_subprocess("train", "--data", bad, "--task", "pointwise", "--out", tmp_path / "m")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"rmcompress train: error: {bad}:9: label 'maybe' is not a number"
    assert not (tmp_path / "m").exists()
