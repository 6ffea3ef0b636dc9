"""``rmcompress train`` on the data people have: TRL conversational pairs under other column names,
the task told from the columns; the column flags of evaluate, compress and score."""
import json

import pytest

from rmcompress.data.conversation import render
from tests.helpers import TINY_TRAIN_FLAGS

PROMPTS = ["How long do I boil an egg?", "What is the capital of France?", "Name a prime number.",
           "Is the sea salty?"]


def _conversations(path, n=48):
    with open(path, "w") as f:
        for i in range(n):
            q = [{"role": "user", "content": f"{PROMPTS[i % 4]} ({i})"}]
            f.write(json.dumps({"question": q, "better": [{"role": "assistant", "content": "a clear helpful answer"}],
                                "worse": [{"role": "assistant", "content": f"no idea {i}"}]}) + "\n")
    return path


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_conversational_pairs_under_other_names_without_task(tmp_path, cli):
    data = _conversations(tmp_path / "prefs.jsonl")
    cols = ["--prompt-column", "question", "--chosen-column", "better", "--rejected-column", "worse"]
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "m", *cols, *TINY_TRAIN_FLAGS)
    assert rc == 0 and f"{data}: task pairwise, told from its columns" in err
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert report["task"] == "pairwise" and report["n_train"] + report["n_examples"] == 48
    assert meta["train_config"]["chosen_column"] == "better"
    rc, out, _ = cli("evaluate", "--model", tmp_path / "m", "--data", data, "--json", "--latency-runs", "0", *cols)
    assert rc == 0 and json.loads(out)["n_examples"] == 48
    rc, out, _ = cli("score", "--model", tmp_path / "m", "--data", data, *cols)
    first = json.loads(out.splitlines()[0])
    assert first["chosen"] == render([{"role": "user", "content": f"{PROMPTS[0]} (0)"},
                                      {"role": "assistant", "content": "a clear helpful answer"}])
    rc, _, err = cli("evaluate", "--model", tmp_path / "m", "--data", data, "--latency-runs", "0")
    line = _one_line(err)
    assert rc == 2 and "pairwise data needs columns chosen and rejected" in line and "--chosen-column" in line


@pytest.mark.parametrize("rows,message", [
    ([{"text": "a", "label": 1, "chosen": "x", "rejected": "y"}] * 2,
     "the columns ['text', 'label', 'chosen', 'rejected'] fit both tasks"),
    ([{"body": "a", "stars": 1}] * 2, "cannot tell the task from the columns ['body', 'stars']"),
])
def test_a_task_the_columns_do_not_tell_is_one_line(tmp_path, cli, rows, message):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "m", *TINY_TRAIN_FLAGS)
    line = _one_line(err)
    assert rc == 2 and line.startswith(f"rmcompress train: error: {data}: {message}") and "--task" in line
    assert not (tmp_path / "m").exists()


def test_column_flags_of_both_tasks_are_refused(tmp_path, cli):
    data = _conversations(tmp_path / "prefs.jsonl", 4)
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "m", "--text-column", "question",
                     "--chosen-column", "better", *TINY_TRAIN_FLAGS)
    line = _one_line(err)
    assert rc == 2 and "--text-column, --chosen-column name columns of both tasks; pass --task" in line


def test_the_column_flags_choose_the_task(tmp_path, cli):
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"body": f"{w} film {i}", "stars": int(w == "good")}) + "\n"
                            for i in range(40) for w in ("good", "bad")))
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "m", "--text-column", "body",
                     "--label-column", "stars", *TINY_TRAIN_FLAGS)
    assert rc == 0 and "task pointwise, told from its columns" in err
    assert json.loads((tmp_path / "m" / "report.json").read_text())["task"] == "pointwise"


def test_bad_input_is_one_line_when_the_task_is_told_from_the_columns(tmp_path, cli):
    data = _conversations(tmp_path / "prefs.jsonl")
    cols = ["--prompt-column", "question", "--chosen-column", "better", "--rejected-column", "worse"]
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "m", *cols, "--epochs", "-1")
    assert rc == 2 and "--epochs -1 must be >= 1" in _one_line(err)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mine.txt").write_text("keep")
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "m", *cols, *TINY_TRAIN_FLAGS)
    assert rc == 2 and "--overwrite" in _one_line(err)
