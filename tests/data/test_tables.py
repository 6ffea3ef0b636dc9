"""Tables: a path, a pandas DataFrame, a ``datasets.Dataset``, rows or columns become the one table
the loaders validate; every Python entry point that takes data takes them; misuse is one line
naming the argument."""
import numpy as np
import pandas as pd
import pytest

from rmcompress.data.formats import LINE_COLUMN
from rmcompress.data.loaders import load_data
from rmcompress.data.split import split_data
from rmcompress.data.synthetic import pairwise_frame, pointwise_frame
from rmcompress.data.tables import Table, as_table
from rmcompress.errors import DataError, RMCompressError, UsageError
from tests.helpers import tiny_config

datasets = pytest.importorskip("datasets")

ROWS = [{"text": "a fine film", "label": 1}, {"text": "dull and flat", "label": 0}]


def test_every_kind_of_table_gives_the_same_rows(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame(ROWS).to_csv(path, index=False)
    kinds = {str(path): path, "DataFrame": pd.DataFrame(ROWS), "rows": ROWS,
             "columns": {"text": ["a fine film", "dull and flat"], "label": [1, 0]},
             "Dataset": datasets.Dataset.from_list(ROWS)}
    for source, data in kinds.items():
        d = load_data(data)
        assert d.task == "pointwise" and d.texts == ["a fine film", "dull and flat"], source
        np.testing.assert_array_equal(d.labels, [1, 0])
        assert d.source == source


def test_a_frame_is_copied_and_rows_are_numbered_from_one():
    df = pd.DataFrame(ROWS, index=[10, 20])
    t = as_table(df)
    assert list(t.frame[LINE_COLUMN]) == [1, 2] and LINE_COLUMN not in df.columns
    assert t.columns == ["text", "label"] and as_table(t) is t
    bad = pd.DataFrame({"text": ["ok", "fine"], "label": [1, "x"]})
    with pytest.raises(DataError, match=r"^DataFrame:2: label 'x' is not a number"):
        load_data(bad, "pointwise")


def test_a_dataset_split_is_named_by_its_split():
    ds = datasets.Dataset.from_list(ROWS, split="train")
    assert load_data(ds).source == "Dataset[train]"


@pytest.mark.parametrize("data,match", [
    (3, r"^load_data: data is a int; pass a file path, a pandas DataFrame"),
    (["a", "b"], r"^data: element 0 is a str, expected a dict"),
    ({"text": ["a", "b"], "label": [1]}, r"^data: a dict of columns whose columns do not line up"),
    (pd.DataFrame({"text": []}), r"^DataFrame: no rows"),
    (pd.DataFrame([["a", 1, 2]], columns=["text", "label", "label"]), r"^DataFrame: column 'label' appears twice"),
])
def test_misuse_is_one_line_naming_the_argument(data, match):
    with pytest.raises(RMCompressError, match=match) as e:
        load_data(data, "pointwise")
    assert "\n" not in str(e.value)


def test_a_dataset_dict_asks_for_one_split():
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS)})
    with pytest.raises(UsageError, match=r"^data: a dataset with splits \['train', 'test'\]; pass one split, "
                                         r"e.g. data\['train'\]"):
        as_table(dd)


def test_load_data_arguments_are_checked():
    df = pd.DataFrame(ROWS)
    with pytest.raises(UsageError, match=r"load_data: task 'pairwse' unknown; .*did you mean 'pairwise'"):
        load_data(df, "pairwse")
    with pytest.raises(UsageError, match=r"unknown argument 'text_col' \(did you mean 'text_column'\?\)"):
        load_data(df, text_col="text")
    with pytest.raises(UsageError, match=r"text_column is a int, expected a column name"):
        load_data(df, "pointwise", text_column=1)
    with pytest.raises(DataError, match=r"^DataFrame: no label column 'stars'; columns found: \['text', 'label'\]"):
        load_data(df, "pointwise", label_column="stars")
    loaded = load_data(df)
    assert load_data(loaded) is loaded
    with pytest.raises(UsageError, match="already loaded as pointwise data, but the task is pairwise"):
        load_data(loaded, "pairwise")


def test_split_data_refuses_a_frame():
    with pytest.raises(UsageError, match=r"^split_data: data is a DataFrame; pass loaded data"):
        split_data(pd.DataFrame(ROWS), 0.5)


def test_train_takes_a_dataframe_and_a_dataset(tmp_path):
    from rmcompress.training.trainer import train

    frame = pointwise_frame(64, seed=3)
    result = train(frame, tiny_config(task="pointwise", max_steps=2, val_fraction=0.25), tmp_path / "m")
    assert result.report["n_train"] == 48 and result.report["n_examples"] == 16
    pairs = datasets.Dataset.from_pandas(pairwise_frame(40, seed=3))
    result = train(pairs, tiny_config(task="pairwise", max_steps=2), validation=pairwise_frame(8, seed=4))
    assert result.report["n_train"] == 40 and result.report["n_examples"] == 8
    assert result.bundle.metadata["data"] == "Dataset"


def test_train_names_a_wrong_argument(tmp_path):
    from rmcompress.training.trainer import train

    with pytest.raises(UsageError, match=r"^train: cfg is a dict, expected a TrainConfig"):
        train(pointwise_frame(8), {"task": "pointwise"})
    with pytest.raises(UsageError, match=r"^train: data is a int; pass a file path, a pandas DataFrame"):
        train(5, tiny_config())
    with pytest.raises(UsageError, match=r"^train: validation is a set; pass"):
        train(pointwise_frame(8), tiny_config(), validation={1})
    with pytest.raises(UsageError, match=r"TrainConfig: unknown setting 'txt_column' \(did you mean 'text_column'\?\)"):
        tiny_config(txt_column="x")


def test_evaluate_and_compress_take_a_dataframe(tmp_path):
    from rmcompress.compression.pipeline import compress
    from rmcompress.evaluation.evaluate import evaluate
    from rmcompress.training.trainer import train

    frame = pointwise_frame(64, seed=5).rename(columns={"sentence": "review", "label": "stars"})
    cfg = tiny_config(task="pointwise", max_steps=2, text_column="review", label_column="stars")
    train(frame, cfg, tmp_path / "m")
    report = evaluate(tmp_path / "m", pointwise_frame(32, seed=6), latency_runs=0)
    assert report["n_examples"] == 32 and report["data"] == "DataFrame"
    row = compress(tmp_path / "m", {"name": "tiny", "passes": ["fuse"]}, frame, tmp_path / "c", latency_runs=0)
    assert row["n_examples"] > 0  # the training run's column names (review, stars) read the frame


def test_a_table_is_a_frozen_pair():
    t = Table(pd.DataFrame({"a": [1], LINE_COLUMN: [1]}), "x")
    assert t.columns == ["a"] and t.source == "x"


def test_one_row_integer_column_names_and_a_dict_of_frames():
    one = as_table({"text": "a fine film", "label": 1})
    assert one.source == "row" and one.frame[["text", "label"]].values.tolist() == [["a fine film", 1]]
    assert as_table(pd.DataFrame({0: ["a", "b"], 1: [0, 1]})).columns == ["0", "1"]
    with pytest.raises(UsageError, match=r"^data: a dataset with splits \['train'\]; pass one split"):
        as_table({"train": pd.DataFrame(ROWS)})
