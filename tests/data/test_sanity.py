"""Data that cannot train a model is refused with one line naming the file; pipes are read, not
called empty; a vocabulary larger than the model's token table is named before scoring."""
from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from rmcompress.config.training import TrainConfig
from rmcompress.data.loaders import PairwiseData, PointwiseData, load_pairwise, load_pointwise, load_training_data
from rmcompress.data.split import check_split_sizes, split_data
from rmcompress.data.vocab_fit import check_vocab_fits, vocab_lines
from rmcompress.errors import DataError, ModelError

ROWS = "".join(f"film number {i} is {'good' if i % 2 else 'bad'}\t{i % 2}\n" for i in range(40))


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _pipe(payload: bytes) -> str:
    """A ``/dev/fd/N`` path fed by a thread, as ``<(cat file)`` gives one."""
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            f.write(payload)

    threading.Thread(target=feed, daemon=True).start()
    return f"/dev/fd/{r}"


def test_a_pipe_is_read_and_its_format_sniffed(tmp_path):
    data = load_pointwise(_pipe(("text\tlabel\n" + ROWS).encode()))
    assert len(data) == 40 and data.source.startswith("/dev/fd/")
    pairs = load_pairwise(_pipe(b'{"chosen": "yes please", "rejected": "no"}\n{"chosen": "a", "rejected": "b"}\n'))
    assert len(pairs) == 2
    csv = load_pointwise(_pipe(b"text,label\nfine,1\nbad,0\n"))
    assert csv.texts == ["fine", "bad"]
    with pytest.raises(DataError, match=r"^/dev/fd/\d+: stream is empty$"):
        load_pointwise(_pipe(b""))


def test_a_named_fifo_is_read(tmp_path):
    fifo = tmp_path / "data.tsv"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w") as f:
            f.write("text\tlabel\n" + ROWS)

    threading.Thread(target=feed, daemon=True).start()
    assert len(load_pointwise(fifo)) == 40


@pytest.mark.parametrize("name,text,message", [
    ("dup.tsv", "text\ttext\tlabel\na\tb\t1\n", r"dup.tsv:1: column 'text' appears twice in the header \(columns 1 and 2\)"),
    ("dup.csv", "label,text,text\n1,a,b\n", r"dup.csv:1: column 'text' appears twice in the header \(columns 2 and 3\)"),
    ("dup.jsonl", '{"text": "a", "label": 1}\n{"text": "a", "text": "b", "label": 1}\n',
     r"dup.jsonl:2: key 'text' appears twice in one object"),
    ("case.tsv", "Text\ttext\tlabel\na\tb\t1\n", r"case.tsv: columns \['Text', 'text'\] differ only in case"),
])
def test_duplicate_column_names_are_errors_naming_file_and_column(tmp_path, name, text, message):
    with pytest.raises(DataError, match=message):
        load_pointwise(_write(tmp_path, name, text))


def test_unnamed_trailing_columns_are_not_duplicates(tmp_path):
    assert len(load_pointwise(_write(tmp_path, "t.csv", "text,label,,\nfine,1,,\nbad,0,,\n"))) == 2


def test_a_single_class_is_refused_for_training(tmp_path):
    one = _write(tmp_path, "one.tsv", "text\tlabel\n" + "".join(f"film {i}\t1\n" for i in range(30)))
    with pytest.raises(DataError, match=r"one.tsv: every label is 1 \(30 rows\): training needs more than one class"):
        load_training_data(one, TrainConfig())
    real = _write(tmp_path, "real.tsv", "text\tscore\n" + "".join(f"film {i}\t0.5\n" for i in range(30)))
    with pytest.raises(DataError, match=r"real.tsv: every label is 0.5 \(30 rows\): training needs more than one value"):
        load_training_data(real, TrainConfig())


def test_too_few_rows_for_a_validation_split_names_file_and_counts(tmp_path):
    pair = _write(tmp_path, "pair.jsonl", '{"chosen": "yes", "rejected": "no"}\n')
    with pytest.raises(DataError, match=r"pair.jsonl: 1 usable rows: too few to hold out 0.1 of them for validation "
                                        r"\(1\) and train on the rest \(0\)"):
        load_training_data(pair, TrainConfig(task="pairwise"))
    data, val = load_training_data(pair, TrainConfig.from_flat(task="pairwise", val_fraction=0.0))
    assert len(data) == 1 and val is None
    check_split_sizes(2, 0.5)
    with pytest.raises(DataError):
        check_split_sizes(1, 0.01, "x.tsv")


def test_disjoint_split_of_repeated_texts_is_an_error_not_stop_iteration():
    data = PointwiseData(["same text"] * 60, np.arange(60, dtype=np.float32) % 2, "binary", source="rep.tsv")
    with pytest.raises(DataError, match=r"^rep.tsv: --split disjoint leaves no training rows: all 54 training texts "
                                        r"occur inside the 6 validation texts"):
        split_data(data, 0.1, 0, "disjoint")
    tr, va = split_data(data, 0.1, 0, "random")
    assert (len(tr), len(va)) == (54, 6)
    pairs = PairwiseData(["a b c"] * 10, ["x"] * 10, np.zeros(10, np.float32), source="p.jsonl")
    with pytest.raises(DataError, match=r"p.jsonl: 1 usable full texts \(not inside another text\): too few"):
        split_data(pairs, 0.2, 0, "sentences")


def test_a_vocabulary_larger_than_the_token_table_names_both_files(tmp_path):
    (tmp_path / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(20)))
    assert vocab_lines(tmp_path / "vocab.txt") == 20
    check_vocab_fits(tmp_path, {"arch": {"vocab_size": 20}})
    check_vocab_fits(tmp_path, {"arch": {"vocab_size": 10, "input_vocab_size": 25}})  # ids remapped
    check_vocab_fits(tmp_path, {"task": "pointwise"})  # not stated: nothing to check
    with pytest.raises(ModelError, match=rf"^{tmp_path}/vocab.txt defines 20 token ids but {tmp_path}/model.keras "
                                         r"has a token table of 16 rows: the vocabulary does not belong to this model$"):
        check_vocab_fits(tmp_path, json.loads('{"arch": {"vocab_size": 16}}'))
