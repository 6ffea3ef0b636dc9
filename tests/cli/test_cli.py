"""The rmcompress CLI: train -> export -> evaluate through main(), exit codes, quiet output."""
import json
import subprocess
import sys

import pytest

from rmcompress.cli import main

TINY = ["--width", "16", "--depth", "1", "--heads", "2", "--ffn", "32", "--seq-len", "16", "--vocab-size", "300",
        "--epochs", "1", "--max-steps", "4", "--patience", "0"]


def test_train_export_evaluate(tmp_path, pointwise_file, capsys):
    model, exp = tmp_path / "m", tmp_path / "e"
    assert main(["train", "--data", str(pointwise_file), "--task", "pointwise", "--out", str(model), *TINY]) == 0
    assert (model / "report.json").is_file()
    assert main(["export", "--model", str(model), "--out", str(exp), "--latency-runs", "10"]) == 0
    assert (exp / "model.tflite").is_file() and (exp / "saved_model" / "saved_model.pb").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(exp / "model.tflite"), "--data", str(pointwise_file), "--json",
                 "--latency-runs", "200"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "tflite" and 0 <= report["accuracy"] <= 1 and report["latency_runs"] == 200


def test_train_keeps_phrases_of_validation_sentences_out_of_training_and_says_so(tmp_path, cli):
    sentences = [f"the {a} film was {b}" for a in ("long", "short", "odd", "new", "old") for b in ("good", "bad", "fine")]
    rows = sentences + [s.split(" was ")[0] for s in sentences[::3]]  # phrases inside the sentences
    data = tmp_path / "phrases.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(rows)))
    rc, _, err = cli("train", "--data", data, "--task", "pointwise", "--out", tmp_path / "m", *TINY,
                     "--val-fraction", "0.2")
    assert rc == 0, err
    assert f"note: {data}: 5 of 20 texts occur inside another text" in err and "split sentences" in err
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["split"] == "sentences" and report["n_examples"] == 3  # 0.2 of the 15 full sentences


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    rc = main(["evaluate", "--model", str(tmp_path / "missing"), "--data", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "missing: no such file or directory" in err[0]
    assert "Traceback" not in err[0]


def test_no_command_is_one_error_line_after_the_help(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert "usage: rmcompress" in out
    assert err.strip() == ("rmcompress: error: no command given; choose one of train, import, shrink, compress, "
                           "search, sensitivity, export, evaluate, score, report, demo")


def test_existing_output_needs_overwrite(tmp_path, pointwise_file, capsys):
    (tmp_path / "m").mkdir()
    rc = main(["train", "--data", str(pointwise_file), "--task", "pointwise", "--out", str(tmp_path / "m"), *TINY])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def test_cli_is_quiet_without_verbose(tmp_path, pointwise_file):
    """A subprocess run prints no TensorFlow C++ log lines (absl 'I0000', oneDNN notices)."""
    out = subprocess.run([sys.executable, "-m", "rmcompress", "evaluate", "--model", str(tmp_path / "nope"),
                          "--data", str(pointwise_file)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("rmcompress evaluate: error:")
    assert len(out.stderr.strip().splitlines()) == 1


def test_demo_pipeline_small(tmp_path, monkeypatch):
    """The demo's train -> export -> evaluate -> report path, with tiny models for speed."""
    from rmcompress.commands import demo

    monkeypatch.setattr(demo, "DEMO_MODELS", [
        ("bow", "pointwise", dict(arch="bow", width=8, hidden=8, epochs=1, max_steps=3)),
        ("pair", "pairwise", dict(arch="bow", width=8, hidden=8, epochs=1, max_steps=3, seq_len=24))])
    monkeypatch.setattr(demo, "DEMO_RECIPES", [("bow", "lossless")])
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["bow", "pair", "bow + lossless"]
    assert (tmp_path / "demo" / "report.md").is_file() and (tmp_path / "demo" / "exports" / "bow" / "model.tflite").is_file()


@pytest.mark.parametrize("cmd", ["train", "export", "evaluate", "demo"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and cmd in capsys.readouterr().out


def test_public_api_is_importable():
    import rmcompress
    from rmcompress import TrainConfig, evaluate, export_model, load_model_dir, train  # noqa: F401

    for name in rmcompress.__all__:
        assert getattr(rmcompress, name) is not None
    assert TrainConfig().arch.name == "transformer" and callable(train.__call__) and train.__doc__


def test_every_help_states_every_default():
    """``rmcompress CMD --help`` names the default of every option that has one (a value, not a
    switch); ``train``'s come from the config declarations, the others from argparse."""
    import argparse

    from rmcompress.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, p in sub.choices.items():
        for action in p._actions:
            if (action.option_strings and action.default not in (None, argparse.SUPPRESS)
                    and not isinstance(action.default, bool) and action.nargs != 0
                    and "[default:" not in (action.help or "")):
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing
    assert "[default: 200]" in sub.choices["export"].format_help()
