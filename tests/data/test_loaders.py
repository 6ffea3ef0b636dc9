"""Loaders: every format, column auto-detection, both tasks, label kinds, skips, line-numbered errors."""
import gzip
import json

import numpy as np
import pandas as pd
import pytest

from rmcompress.data.loaders import infer_task, load_data, load_pairwise, load_pointwise
from rmcompress.errors import DataError

ROWS = pd.DataFrame({"sentence": ["a fine film", "dull and flat", "really moving"], "label": [1, 0, 1]})


def write(df: pd.DataFrame, path):
    s = str(path)
    if s.endswith(".csv"):
        df.to_csv(path, index=False)
    elif s.endswith(".tsv"):
        df.to_csv(path, sep="\t", index=False)
    elif s.endswith(".jsonl"):
        df.to_json(path, orient="records", lines=True)
    elif s.endswith(".parquet"):
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_pointwise_every_format(tmp_path, suffix):
    d = load_pointwise(write(ROWS, tmp_path / f"d{suffix}"))
    assert d.texts == list(ROWS.sentence)
    np.testing.assert_array_equal(d.labels, [1, 0, 1])
    assert d.label_kind == "binary"


def test_gzip_and_json_array(tmp_path):
    raw = ROWS.to_json(orient="records", lines=True).encode()
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(raw))
    assert load_pointwise(tmp_path / "d.jsonl.gz").texts == list(ROWS.sentence)
    (tmp_path / "a.json").write_text(json.dumps(ROWS.to_dict("records")))
    assert len(load_pointwise(tmp_path / "a.json")) == 3


@pytest.mark.parametrize("text_col,label_col", [("text", "score"), ("Review", "Rating"), ("content", "reward")])
def test_column_autodetection(tmp_path, text_col, label_col):
    df = pd.DataFrame({"id": [1, 2], text_col: ["x y", "z"], label_col: [0.5, 2.0]})
    d = load_pointwise(write(df, tmp_path / "d.csv"))
    assert d.texts == ["x y", "z"] and d.label_kind == "real"
    np.testing.assert_allclose(d.labels, [0.5, 2.0])


def test_column_override_and_missing_columns_listed(tmp_path):
    df = pd.DataFrame({"body": ["a", "b"], "stars": [1, 0]})
    p = write(df, tmp_path / "d.csv")
    assert load_pointwise(p, text_column="body", label_column="stars").texts == ["a", "b"]
    with pytest.raises(DataError, match=r"columns found: \['body', 'stars'\]"):
        load_pointwise(p)


def test_pairwise_hh_and_trl_formats(tmp_path):
    hh = pd.DataFrame({"chosen": ["\n\nHuman: hi\n\nAssistant: hello!"], "rejected": ["\n\nHuman: hi\n\nAssistant: go away"]})
    d = load_pairwise(write(hh, tmp_path / "hh.jsonl"))
    assert d.chosen == list(hh.chosen) and d.margin.tolist() == [0.0]
    trl = pd.DataFrame({"prompt": ["Q: 2+2?"], "chosen": ["4"], "rejected": ["5"], "margin": [0.5]})
    d = load_pairwise(write(trl, tmp_path / "trl.csv"))
    assert d.chosen == ["Q: 2+2?\n4"] and d.rejected == ["Q: 2+2?\n5"]
    assert d.margin.tolist() == [0.5]


def test_skips_are_counted(tmp_path):
    df = pd.DataFrame({"text": ["ok", "   ", "fine"], "label": [1, 0, 0]})
    d = load_pointwise(write(df, tmp_path / "d.csv"))
    assert len(d) == 2 and d.skipped == {"empty_text": 1}
    pairs = pd.DataFrame({"chosen": ["a", "same", "c"], "rejected": ["b", "same", ""]})
    d = load_pairwise(write(pairs, tmp_path / "p.jsonl"))
    assert len(d) == 1 and d.skipped == {"chosen_equals_rejected": 1, "empty_text": 1}


def test_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("sentence\tlabel\ngood\t1\nbad\tnope\n")
    with pytest.raises(DataError, match=r"bad.tsv:3: label 'nope' is not a number"):
        load_pointwise(p)
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON"):
        load_pointwise(p)
    p = tmp_path / "bad.csv"
    p.write_bytes(b"text,label\nok,1\n\xff\xfe,0\n")
    with pytest.raises(DataError, match=r"bad.csv:3: not valid UTF-8"):
        load_pointwise(p)
    p = tmp_path / "range.csv"
    p.write_text("text,label\na,1\nb,3\n")
    with pytest.raises(DataError, match=r"range.csv:3: label 3 is out of range"):
        load_pointwise(p, label_kind="binary")


def test_task_detection_and_mismatch(tmp_path, pointwise_file, pairwise_file):
    assert infer_task(pointwise_file) == "pointwise" and infer_task(pairwise_file) == "pairwise"
    with pytest.raises(DataError, match="looks like pairwise data"):
        load_data(pairwise_file, "pointwise")
    with pytest.raises(DataError, match="looks like pointwise data"):
        load_data(pointwise_file, "pairwise")


def test_long_texts_are_truncated_on_the_right_side(tmp_path):
    long = "x" * 50_000 + " END"
    df = pd.DataFrame({"chosen": ["START " + long], "rejected": ["START other"]})
    d = load_pairwise(write(df, tmp_path / "p.jsonl"), max_chars=1000)
    assert len(d.chosen[0]) == 1000 and d.chosen[0].endswith("END")
    d = load_pointwise(write(pd.DataFrame({"text": ["START " + long], "label": [1]}), tmp_path / "t.csv"), max_chars=1000)
    assert d.texts[0].startswith("START") and len(d.texts[0]) == 1000


def test_a_truncated_parquet_file_is_one_line_naming_it(tmp_path):
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1\x15\x04\x15\x00" + b"\x00" * 40 + b"PAR1")  # magic numbers around no metadata
    with pytest.raises(DataError) as e:
        load_pointwise(p)
    assert str(e.value).startswith(f"{p}: not a readable Parquet file (")
    assert len(str(e.value).splitlines()) == 1 and str(e.value) == str(e.value).strip()
