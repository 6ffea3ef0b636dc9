"""A battery of hostile command lines, run as a user runs them: each case a fresh
``python -m rmcompress`` process in its own folder.

A case is data: the arguments, the files to create first, the exit codes allowed and the files
that must survive. Every case must end with exit 0 (a model it wrote has finite weights) or exit 2
with exactly one line on stderr; exit 1, a traceback, a NaN model or a deleted file of the user's is
a failure. Prints a markdown table and the counts; exits 1 when a case fails.

    python benchmarks/hostile_battery.py [--only SUBSTRING ...] [--keep DIR]

Placeholders in arguments and file specs: ``{c}`` the case's folder, ``{data}`` a 200-row
pointwise TSV, ``{pairs}`` a pairwise JSON lines file, ``{model}`` a tiny trained transformer,
``{export}`` its TFLite export; the argument ``TINY`` expands to the tiny training flags.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import TINY_TRAIN_FLAGS  # noqa: E402

GOOD_ROWS = "".join(f"film number {i} is {'good' if i % 2 else 'bad'}\t{i % 2}\n" for i in range(60))


@dataclass
class Case:
    """``argv`` after ``rmcompress``; ``files``: relative path -> text, bytes, or a tuple
    ``("copy", SRC)``, ``("symlink", TARGET)``, ``("dir",)``, ``("gzip", TEXT)``; ``expect``: the exit
    codes allowed; ``keep``: files (relative) that must exist unchanged afterwards; ``message``: a
    text the error line must contain."""

    name: str
    argv: list
    files: dict = field(default_factory=dict)
    expect: tuple = (2,)
    keep: tuple = ()
    message: str = ""


def T(*argv):
    return ["train", "--task", "pointwise", "--data", "{data}", "--out", "{c}/out", "TINY", *argv]


def recipe(name, text, expect=(2,), message=""):
    return Case(f"recipe: {name}", ["compress", "--model", "{model}", "--recipe", "{c}/r.yaml", "--data", "{data}",
                                    "--out", "{c}/out", "--latency-runs", "0"], {"r.yaml": text}, expect,
                message=message)


def data(name, fname, content, expect=(2,), argv=(), message=""):
    return Case(f"data: {name}", ["train", "--task", "pointwise", "--data", "{c}/" + fname, "--out", "{c}/out",
                                  "TINY", "--val-fraction", "0.2", *argv], {fname: content}, expect, message=message)


def broken_model(name, changes: dict, command="evaluate", expect=(2,), message=""):
    files = {"m": ("copy", "{model}"), **{f"m/{k}": v for k, v in changes.items()}}
    argv = {"evaluate": ["evaluate", "--model", "{c}/m", "--data", "{data}", "--latency-runs", "0"],
            "export": ["export", "--model", "{c}/m", "--out", "{c}/out", "--latency-runs", "0"],
            "shrink": ["shrink", "--model", "{c}/m", "--out", "{c}/out"]}[command]
    return Case(f"model ({command}): {name}", argv, files, expect, message=message)


def cases() -> list[Case]:
    meta_fields = "metadata.json"
    return [
        # -- train: flag values ------------------------------------------------------------------
        Case("train --learning-rate -0.001", T("--learning-rate", "-0.001")),
        Case("train --learning-rate 0", T("--learning-rate", "0"), expect=(0, 2)),
        Case("train --batch-size 0", T("--batch-size", "0")),
        Case("train --batch-size 1e3", T("--batch-size", "1e3")),
        Case("train --batch-size 100000 (above the rows)", T("--batch-size", "100000"), expect=(0, 2)),
        Case("train --epochs 0", T("--epochs", "0")),
        Case("train --max-steps 0", T("--max-steps", "0")),
        Case("train --max-steps -5", T("--max-steps", "-5")),
        Case("train --depth 0", T("--depth", "0"), expect=(0, 2)),
        Case("train --width 1 --heads 2", T("--width", "1")),
        Case("train --ffn 0", T("--ffn", "0")),
        Case("train --arch cnn --kernel-sizes ''", T("--arch", "cnn", "--kernel-sizes", "")),
        Case("train --arch cnn --kernel-sizes 3,,5", T("--arch", "cnn", "--kernel-sizes", "3,,5"), expect=(0, 2)),
        Case("train --arch cnn --kernel-sizes -3", T("--arch", "cnn", "--kernel-sizes=-3")),
        Case("train --arch cnn --kernel-sizes '3, 5'", T("--arch", "cnn", "--kernel-sizes", "3, 5"), expect=(0, 2)),
        Case("train --arch cnn --filters 0", T("--arch", "cnn", "--filters", "0")),
        Case("train --dropout -0.1", T("--dropout", "-0.1")),
        Case("train --val-fraction 0.99", T("--val-fraction", "0.99"), expect=(0, 2)),
        Case("train --val-fraction -0", T("--val-fraction", "-0"), expect=(0,)),
        Case("train --flops-weight -1", T("--flops-weight", "-1")),
        Case("train --budget-flops 0", T("--budget-flops", "0")),
        Case("train --budget-flops 1e-9", T("--budget-flops", "1e-9"), expect=(0, 2)),
        Case("train --budget-flops with --flops-weight", T("--budget-flops", "0.5", "--flops-weight", "0.1"),
             expect=(0, 2)),
        Case("train --distill-temperature 0", T("--distill-temperature", "0")),
        Case("train --distill-weight 0.5 without --teacher", T("--distill-weight", "0.5"), expect=(0, 2)),
        Case("train --augment -1", T("--augment", "-1")),
        Case("train --head-hidden 0", T("--head-hidden", "0"), expect=(0, 2)),
        Case("train --seq-len 1", T("--seq-len", "1"), expect=(0, 2)),
        Case("train --gate-learning-rate -1", T("--flops-weight", "0.1", "--gate-learning-rate", "-1")),
        Case("train --budget-warmup 2", T("--budget-flops", "0.5", "--budget-warmup", "2")),
        Case("train repeated --epochs (last wins)", T("--epochs", "5", "--epochs", "1"), expect=(0,)),
        Case("train --epochs ' 1 ' (spaces)", T("--epochs", " 1 "), expect=(0, 2)),
        Case("train --learning-rate '１e-3' (full-width digit)", T("--learning-rate", "１e-3"), expect=(0, 2)),
        Case("train --text-column ''", T("--text-column", "")),
        Case("train --text-column nope", T("--text-column", "nope")),
        Case("train --label-column text (same column)", T("--label-column", "text")),
        Case("train --teacher missing", T("--teacher", "{c}/nope")),
        Case("train --teacher a data file", T("--teacher", "{data}")),
        Case("train --init an empty folder", T("--init", "{c}/empty"), {"empty": ("dir",)}),
        Case("train --unlabeled missing", T("--unlabeled", "{c}/nope.txt")),
        Case("train --backbone unknown preset", T("--backbone", "no_such_preset_xx")),
        Case("train --resume with nothing to resume", T("--resume"), expect=(0, 2)),
        Case("train --resume --overwrite", T("--resume", "--overwrite"), expect=(0, 2)),
        Case("train --task pairwise on pointwise --loss mse", ["train", "--task", "pairwise", "--loss", "mse",
                                                               "--data", "{data}", "--out", "{c}/out", "TINY"]),
        # -- train: paths ------------------------------------------------------------------------
        Case("train --data ''", ["train", "--task", "pointwise", "--data", "", "--out", "{c}/out", "TINY"]),
        Case("train --out ''", ["train", "--task", "pointwise", "--data", "{data}", "--out", "", "TINY"]),
        Case("train --out ' ' (a space)", ["train", "--task", "pointwise", "--data", "{data}", "--out", " ", "TINY"],
             expect=(0, 2)),
        Case("train --out unicode name", T()[:5] + ["--out", "{c}/модель 模型 ü", "TINY"], expect=(0,)),
        Case("train --out /dev/null", T()[:5] + ["--out", "/dev/null", "TINY"]),
        Case("train --out /proc/rmc", T()[:5] + ["--out", "/proc/rmc", "TINY"]),
        Case("train --out an existing file", T(), {"out": "my notes\n"}, keep=("out",)),
        Case("train --out an existing file --overwrite", T("--overwrite"), {"out": "my notes\n"}, keep=("out",)),
        Case("train --out in a missing parent", T()[:5] + ["--out", "{c}/a/b/c/out", "TINY"], expect=(0, 2)),
        Case("train --out a symlink to a user folder --overwrite", T("--overwrite"),
             {"mine/thesis.txt": "chapter 1\n", "out": ("symlink", "mine")}, keep=("mine/thesis.txt",)),
        Case("train --out a dangling symlink", T(), {"out": ("symlink", "nowhere")}, expect=(0, 2)),
        Case("train --out with a stale lock file", T(), {"out.rmc-lock": "999999\n"}, expect=(0,)),
        Case("train --out with a stale temp folder", T(), {".rmc-tmp-999999-out/x": "junk"}, expect=(0,)),
        Case("train --overwrite on a model with a hidden user file", T("--overwrite"),
             {"out": ("copy", "{model}"), "out/.DS_Store": "x"}, keep=("out/.DS_Store",)),
        Case("train --overwrite on a model with a user subfolder", T("--overwrite"),
             {"out": ("copy", "{model}"), "out/plots/a.png": b"\x89PNG"}, keep=("out/plots/a.png",)),
        Case("train --overwrite on a model with an empty user subfolder", T("--overwrite"),
             {"out": ("copy", "{model}"), "out/keepme": ("dir",)}, expect=(0, 2)),
        Case("train --out the folder holding --data", ["train", "--task", "pointwise", "--data", "{c}/d/x.tsv",
                                                       "--out", "{c}/d", "--overwrite", "TINY"],
             {"d/x.tsv": "text\tlabel\n" + GOOD_ROWS}, keep=("d/x.tsv",)),
        Case("train --out inside --teacher", T("--teacher", "{c}/t")[:5] + ["--out", "{c}/t/sub", "TINY",
                                                                           "--teacher", "{c}/t"],
             {"t": ("copy", "{model}")}),
        # -- data files --------------------------------------------------------------------------
        data("CRLF line ends", "crlf.tsv", ("text\tlabel\n" + GOOD_ROWS).replace("\n", "\r\n").encode(), (0,)),
        data("UTF-8 byte-order mark", "bom.tsv", b"\xef\xbb\xbf" + ("text\tlabel\n" + GOOD_ROWS).encode(), (0,)),
        data("UTF-16 file", "u16.tsv", ("text\tlabel\n" + GOOD_ROWS).encode("utf-16")),
        data("NUL bytes inside texts", "nul.tsv", ("text\tlabel\n" + GOOD_ROWS).replace("film", "fi\x00lm").encode(),
             (0, 2)),
        data("JSON lines of numbers", "n.jsonl", "1\n2\n3\n"),
        data("JSON object, not a list", "o.json", '{"text": "a", "label": 1}'),
        data("JSON lines labels as strings", "s.jsonl",
             "".join(json.dumps({"text": f"film {i}", "label": str(i % 2)}) + "\n" for i in range(40)), (0, 2)),
        data("JSON lines labels as booleans", "b.jsonl",
             "".join(json.dumps({"text": f"film {i}", "label": bool(i % 2)}) + "\n" for i in range(40)), (0, 2)),
        data("JSON lines label NaN literal", "nan.jsonl",
             "".join('{"text": "film %d", "label": %s}\n' % (i, "NaN" if i == 5 else i % 2) for i in range(40))),
        data("JSON lines texts as numbers", "tn.jsonl",
             "".join(json.dumps({"text": i, "label": i % 2}) + "\n" for i in range(40)), (0, 2)),
        data("JSON lines texts as lists", "tl.jsonl",
             "".join(json.dumps({"text": ["a", "b"], "label": i % 2}) + "\n" for i in range(40))),
        data("JSON lines text null", "tnull.jsonl",
             "".join(json.dumps({"text": None if i < 3 else f"film {i}", "label": i % 2}) + "\n" for i in range(40)),
             (0, 2)),
        data("labels 1.0/0.0 for bce", "f.tsv", "text\tlabel\n" + GOOD_ROWS.replace("\t1\n", "\t1.0\n"), (0,),
             ("--loss", "bce")),
        data("label column of 'yes'/'no'", "yn.tsv", "text\tlabel\n" + GOOD_ROWS.replace("\t1\n", "\tyes\n")
             .replace("\t0\n", "\tno\n")),
        data("gzip suffix on plain text", "p.tsv.gz", "text\tlabel\n" + GOOD_ROWS),
        data("gzip of an empty file", "e.tsv.gz", ("gzip", "")),
        data("gzip of binary bytes", "bin.tsv.gz", ("gzip", "\x00\x01\x02\xff" * 100)),
        data("gzip content under a .tsv name", "z.tsv", ("gzip", "text\tlabel\n" + GOOD_ROWS), (0, 2)),
        data("one line of 5 MB without a newline", "long.tsv", "x" * 5_000_000),
        data("a text-only column", "one.tsv", "text\n" + "".join(f"film {i}\n" for i in range(40))),
        data("padded header names", "pad.tsv", " text \t label \n" + GOOD_ROWS, (0, 2)),
        data("texts that are only digits", "dig.tsv", "text\tlabel\n" + "".join(f"{i}\t{i % 2}\n" for i in range(60)),
             (0,)),
        data("quoted TSV cells with tabs and newlines", "q.tsv",
             "text\tlabel\n" + "".join(f'"film\t{i}\nline"\t{i % 2}\n' for i in range(40)), (0, 2)),
        data("semicolon CSV", "semi.csv", "text;label\n" + GOOD_ROWS.replace("\t", ";")),
        data("10,000 columns", "wide.csv", ",".join(["text", "label"] + [f"c{i}" for i in range(10000)]) + "\n"
             + "".join(f"film {i},{i % 2}" + "," * 10000 + "\n" for i in range(40)), (0, 2)),
        data("truncated Parquet", "t.parquet", b"PAR1\x15\x04\x15\x00" + b"\x00" * 40 + b"PAR1"),
        data("Parquet magic on a text file", "fake.parquet", "text\tlabel\n" + GOOD_ROWS),
        data("a .tsv that is a directory", "dir.tsv", ("dir",)),
        Case("data: a symlink to the data", T()[:4] + ["{c}/link.tsv"] + T()[5:], {"link.tsv": ("symlink", "{data}")},
             expect=(0,)),
        Case("data: a dangling symlink", T()[:4] + ["{c}/link.tsv"] + T()[5:], {"link.tsv": ("symlink", "gone.tsv")}),
        Case("data: /dev/null", T()[:4] + ["/dev/null"] + T()[5:]),
        Case("data: repeated --data (last wins)", T()[:4] + ["{c}/nope.tsv", "--data", "{data}"] + T()[5:],
             expect=(0,)),
        Case("data: --val-data is the training file", T("--val-data", "{data}"), expect=(0, 2)),
        Case("data: --val-data of the other task", T("--val-data", "{pairs}")),
        Case("data: pairwise chosen null", ["train", "--task", "pairwise", "--data", "{c}/p.jsonl", "--out", "{c}/out",
                                            "TINY"],
             {"p.jsonl": "".join(json.dumps({"chosen": None if i == 2 else f"good {i}", "rejected": f"bad {i}"}) + "\n"
                                 for i in range(40))}, expect=(0, 2)),
        Case("data: pairwise chosen as chat turns", ["train", "--task", "pairwise", "--data", "{c}/p.jsonl", "--out",
                                                     "{c}/out", "TINY"],
             {"p.jsonl": "".join(json.dumps({"chosen": [{"role": "user", "content": f"q{i}"}],
                                             "rejected": [{"role": "user", "content": f"r{i}"}]}) + "\n"
                                 for i in range(40))}, expect=(0, 2)),
        # -- model directories -------------------------------------------------------------------
        broken_model("model.keras missing", {"model.keras": None}),
        broken_model("model.keras is garbage", {"model.keras": b"\x00garbage" * 100}),
        broken_model("model.keras is a zip of nonsense", {"model.keras": ("zip", {"config.json": "{]"})}),
        broken_model("model.keras is a directory", {"model.keras": ("dir",)}),
        broken_model("metadata.json missing", {meta_fields: None}),
        broken_model("metadata.json is a list", {meta_fields: "[]"}),
        broken_model("metadata.json empty", {meta_fields: ""}),
        broken_model("metadata.json task missing", {meta_fields: ("meta", {"task": None})}),
        broken_model("metadata.json format foreign", {meta_fields: ("meta", {"format": "other.tool"})}),
        broken_model("metadata.json seq_len a string (unused)", {meta_fields: ("meta", {"seq_len": "long"})}, expect=(0, 2)),
        broken_model("metadata.json arch a string", {meta_fields: ("meta", {"arch": "big"})}),
        broken_model("metadata.json arch a string", {meta_fields: ("meta", {"arch": "big"})}, "shrink"),
        Case("model (compress): metadata.json arch a string", ["compress", "--model", "{c}/m", "--recipe",
                                                               "{c}/r.yaml", "--data", "{data}", "--out", "{c}/out"],
             {"m": ("copy", "{model}"), "m/metadata.json": ("meta", {"arch": "big"}),
              "r.yaml": "passes:\n  - budget: {flops_fraction: 0.5, steps: 2}\n"}),
        broken_model("vocab.txt missing", {"vocab.txt": None}),
        broken_model("vocab.txt empty", {"vocab.txt": ""}),
        broken_model("tokenizer.json corrupt", {"tokenizer.json": "{nope"}),
        broken_model("tokenizer.json a list", {"tokenizer.json": "[1, 2]"}),
        broken_model("model.keras garbage", {"model.keras": b"PK\x03\x04broken"}, "export"),
        broken_model("metadata.json missing", {meta_fields: None}, "export"),
        broken_model("model.keras garbage", {"model.keras": b"PK\x03\x04broken"}, "shrink"),
        Case("evaluate --model the model.keras file", ["evaluate", "--model", "{model}/model.keras", "--data",
                                                       "{data}", "--latency-runs", "0"], expect=(0, 2)),
        Case("evaluate --model a .tflite of text", ["evaluate", "--model", "{c}/m.tflite", "--data", "{data}",
                                                    "--latency-runs", "0"], {"m.tflite": "hello\n"}),
        Case("evaluate --model a truncated .tflite", ["evaluate", "--model", "{c}/e", "--data", "{data}",
                                                      "--latency-runs", "0"],
             {"e": ("copy", "{export}"), "e/model.tflite": ("truncate", "{export}/model.tflite")}),
        Case("evaluate --model an export with an empty .tflite", ["evaluate", "--model", "{c}/e", "--data", "{data}",
                                                                  "--latency-runs", "0"],
             {"e": ("copy", "{export}"), "e/model.tflite": b""}),
        Case("evaluate pairwise data on a pointwise model", ["evaluate", "--model", "{model}", "--data", "{pairs}",
                                                            "--latency-runs", "0"]),
        Case("evaluate --max-examples 1", ["evaluate", "--model", "{model}", "--data", "{data}", "--max-examples", "1",
                                           "--latency-runs", "0", "--json"], expect=(0,)),
        Case("evaluate --data an empty file", ["evaluate", "--model", "{model}", "--data", "{c}/e.tsv"], {"e.tsv": ""}),
        # -- shrink / export / import / report / demo ---------------------------------------------
        Case("shrink a model without gates", ["shrink", "--model", "{model}", "--out", "{c}/out"], expect=(0, 2)),
        Case("shrink --budget-flops 1 --budget-params 0.5", ["shrink", "--model", "{model}", "--out", "{c}/out",
                                                             "--budget-flops", "1", "--budget-params", "0.5"],
             expect=(0, 2)),
        Case("export --format weird", ["export", "--model", "{model}", "--out", "{c}/out", "--format", "weird"]),
        Case("export --format ''", ["export", "--model", "{model}", "--out", "{c}/out", "--format", ""]),
        Case("export --quantize bogus", ["export", "--model", "{model}", "--out", "{c}/out", "--quantize", "bogus"]),
        Case("export --out is the data file's folder", ["export", "--model", "{model}", "--out", "{c}/d",
                                                        "--overwrite"], {"d/x.tsv": "text\n"}, keep=("d/x.tsv",)),
        Case("export --out containing the model", ["export", "--model", "{c}/x/m", "--out", "{c}/x", "--overwrite"],
             {"x/m": ("copy", "{model}")}, keep=("x/m/model.keras",)),
        Case("export --model an export folder", ["export", "--model", "{export}", "--out", "{c}/out"], expect=(0, 2)),
        Case("import --model a text file", ["import", "--model", "{c}/m.keras", "--vocab", "{model}/vocab.txt",
                                            "--task", "pointwise", "--out", "{c}/out"], {"m.keras": "hello"}),
        Case("import --model missing", ["import", "--model", "{c}/m.keras", "--vocab", "{model}/vocab.txt", "--task",
                                        "pointwise", "--out", "{c}/out"]),
        Case("import --vocab empty", ["import", "--model", "{model}/model.keras", "--vocab", "{c}/v.txt", "--task",
                                      "pointwise", "--out", "{c}/out"], {"v.txt": ""}),
        Case("import --vocab binary", ["import", "--model", "{model}/model.keras", "--vocab", "{c}/v.txt", "--task",
                                       "pointwise", "--out", "{c}/out"], {"v.txt": b"\xff\xfe\x00\x81" * 50}),
        Case("import --vocab a directory", ["import", "--model", "{model}/model.keras", "--vocab", "{c}/v",
                                            "--task", "pointwise", "--out", "{c}/out"], {"v": ("dir",)}),
        Case("import --seq-len 100000000", ["import", "--model", "{model}/model.keras", "--vocab",
                                            "{model}/vocab.txt", "--task", "pointwise", "--out", "{c}/out",
                                            "--seq-len", "100000000"], expect=(0, 2)),
        Case("import --out is the model's folder", ["import", "--model", "{c}/m/model.keras", "--vocab",
                                                    "{c}/m/vocab.txt", "--task", "pointwise", "--out", "{c}/m",
                                                    "--overwrite"], {"m": ("copy", "{model}")},
             keep=("m/model.keras", "m/vocab.txt")),
        Case("report on a data file", ["report", "{data}", "--out", "{c}/r"]),
        Case("report --out a file", ["report", "{model}", "--out", "{c}/f"], {"f": "mine\n"}, keep=("f",)),
        Case("report --out a user folder --overwrite", ["report", "{model}", "--out", "{c}/r", "--overwrite"],
             {"r/thesis.md": "# mine\n"}, keep=("r/thesis.md",)),
        Case("demo --out a user folder --overwrite", ["demo", "--out", "{c}/r", "--overwrite"],
             {"r/notes.txt": "mine\n"}, keep=("r/notes.txt",)),
        Case("demo --seed 1e3", ["demo", "--seed", "1e3", "--out", "{c}/r"]),
        Case("compress --recipe ''", ["compress", "--model", "{model}", "--recipe", "", "--data", "{data}",
                                      "--out", "{c}/out"]),
        Case("compress --recipe a directory", ["compress", "--model", "{model}", "--recipe", "{c}/rd", "--data",
                                               "{data}", "--out", "{c}/out"], {"rd": ("dir",)}),
        Case("compress --recipe binary bytes", ["compress", "--model", "{model}", "--recipe", "{c}/r.yaml", "--data",
                                                "{data}", "--out", "{c}/out"], {"r.yaml": b"\xff\xfe\x00\x81" * 50}),
        Case("compress --unlabeled missing", ["compress", "--model", "{model}", "--recipe", "light", "--data",
                                              "{data}", "--out", "{c}/out", "--unlabeled", "{c}/nope.txt"]),
        # -- recipes -----------------------------------------------------------------------------
        recipe("empty file", ""),
        recipe("passes: []", "passes: []\n", (0, 2)),
        recipe("a bare list", "- prune: {sparsity: 0.5}\n"),
        recipe("unknown pass", "passes:\n  - sharpen: {}\n"),
        recipe("unknown key", "passes:\n  - prune: {sparsity: 0.5, colour: red}\n"),
        recipe("unknown top-level key", "passes:\n  - prune: {sparsity: 0.5}\nextras: 1\n"),
        recipe("sparsity a string", "passes:\n  - prune: {sparsity: half}\n"),
        recipe("sparsity .nan", "passes:\n  - prune: {sparsity: .nan}\n"),
        recipe("steps negative", "passes:\n  - prune: {sparsity: 0.5, steps: -5}\n"),
        recipe("steps a float", "passes:\n  - prune: {sparsity: 0.5, steps: 2.5}\n"),
        recipe("tab indentation (YAML syntax error)", "passes:\n\t- prune: {sparsity: 0.5}\n"),
        recipe("unclosed bracket", "passes:\n  - prune: {sparsity: 0.5\n"),
        recipe("a pass with two names", "passes:\n  - {prune: {sparsity: 0.5}, quantize: {}}\n"),
        recipe("pass settings a list", "passes:\n  - prune: [0.5]\n"),
        recipe("include a number", "passes:\n  - prune: {sparsity: 0.5, layers: {include: 5}}\n"),
        recipe("catastrophic regex", "passes:\n  - prune: {sparsity: 0.5, layers: {include: ['(a+)+$']}}\n", (0, 2)),
        recipe("python object tag", "passes: !!python/object/apply:os.system ['echo hi']\n"),
        Case("recipe: built-in name misspelled", ["compress", "--model", "{model}", "--recipe", "lite", "--data",
                                                   "{data}", "--out", "{c}/out"]),
        # -- the command line itself ---------------------------------------------------------------
        Case("no command", []),
        Case("unknown command", ["trian"]),
        Case("train with no flags", ["train"]),
        Case("an unknown flag", T("--colour", "red")),
        Case("--debug=1", T("--debug=1")),
        Case("a flag as a value", T()[:5] + ["--out", "--overwrite", "TINY"], expect=(0, 2)),
    ]


# -- running ----------------------------------------------------------------------------------------
def expand(value: str, where: dict) -> str:
    for key, path in where.items():
        value = value.replace("{" + key + "}", str(path))
    return value


def make_files(case_dir: Path, files: dict, where: dict) -> None:
    import zipfile

    for rel, spec in files.items():
        p = case_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if spec is None:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        elif isinstance(spec, str):
            p.write_text(expand(spec, where), encoding="utf-8")
        elif isinstance(spec, bytes):
            p.write_bytes(spec)
        elif spec[0] == "dir":
            if p.exists() and not p.is_dir():
                p.unlink()
            p.mkdir(parents=True, exist_ok=True)
        elif spec[0] == "copy":
            shutil.copytree(expand(spec[1], where), p)
        elif spec[0] == "symlink":
            p.symlink_to(expand(spec[1], where))
        elif spec[0] == "gzip":
            p.write_bytes(gzip.compress(spec[1].encode("latin-1")))
        elif spec[0] == "zip":
            if p.exists():
                p.unlink()
            with zipfile.ZipFile(p, "w") as z:
                for name, text in spec[1].items():
                    z.writestr(name, text)
        elif spec[0] == "truncate":
            src = Path(expand(spec[1], where)).read_bytes()
            p.write_bytes(src[: len(src) // 2])
        elif spec[0] == "meta":
            meta = json.loads(p.read_text())
            for k, v in spec[1].items():
                if v is None:
                    meta.pop(k, None)
                else:
                    meta[k] = v
            p.write_text(json.dumps(meta))
        else:
            raise ValueError(f"unknown file spec {spec!r}")


def snapshot(case_dir: Path, keep) -> dict:
    out = {}
    for rel in keep:
        p = case_dir / rel
        out[rel] = p.read_bytes() if p.is_file() else None
    return out


def model_dirs_written(case_dir: Path, before: set) -> list[Path]:
    return sorted(p.parent for p in case_dir.rglob("model.keras") if p.parent not in before and p.is_file())


def finite_model(model_dir: Path) -> bool:
    import numpy as np

    from rmcompress.models.modeldir import load_model_dir

    return all(np.all(np.isfinite(w)) for w in load_model_dir(model_dir).model.get_weights())


def run_cli(argv, cwd: Path, timeout: float):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("RMCOMPRESS_KILL_AT", None)
    t = time.time()
    try:
        p = subprocess.run([sys.executable, "-m", "rmcompress", *argv], cwd=str(cwd), env=env, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return p.returncode, p.stderr, time.time() - t
    except subprocess.TimeoutExpired:
        return "timeout", "", time.time() - t


def judge(case: Case, rc, err: str, case_dir: Path, before_files: dict, models_before: set) -> str:
    """``""`` when the case passed, else what went wrong."""
    lines = [l for l in err.strip().splitlines() if l.strip()]
    problems = []
    if rc not in case.expect:
        problems.append(f"exit {rc}, expected {'/'.join(map(str, case.expect))}")
    if "Traceback" in err:
        problems.append("traceback")
    if rc == 2 and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    if rc == 2 and case.message and case.message not in err:
        problems.append(f"message lacks {case.message!r}")
    for rel, content in before_files.items():
        p = case_dir / rel
        if not p.is_file() or p.read_bytes() != content:
            problems.append(f"{rel} deleted or changed")
    if rc == 0:
        for d in model_dirs_written(case_dir, models_before):
            try:
                if not finite_model(d):
                    problems.append(f"{d.name}: non-finite weights")
            except Exception as e:  # a model rmcompress wrote must load
                problems.append(f"{d.name}: does not load ({type(e).__name__})")
        for report in case_dir.rglob("report.json"):
            try:
                json.loads(report.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            except ValueError as e:
                problems.append(f"{report.name}: not strict JSON ({e})")
    return "; ".join(problems)


def setup(work: Path) -> dict:
    from rmcompress.data.synthetic import pairwise_frame, pointwise_frame

    shared = work / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    pointwise_frame(200).to_csv(shared / "data.tsv", sep="\t", index=False)
    pairwise_frame(100).to_json(shared / "pairs.jsonl", orient="records", lines=True)
    where = {"data": shared / "data.tsv", "pairs": shared / "pairs.jsonl", "model": shared / "model",
             "export": shared / "export"}
    for argv in () if (where["export"] / "model.tflite").exists() else (["train", "--task", "pointwise", "--data", where["data"], "--out", where["model"],
                  *TINY_TRAIN_FLAGS],
                 ["export", "--model", where["model"], "--out", where["export"], "--latency-runs", "0"]):
        rc, err, _ = run_cli([str(a) for a in argv], shared, 600)
        if rc != 0:
            raise SystemExit(f"setup failed: {argv[0]}: {err}")
    return where


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[],
                    help="run the cases whose name contains this text (repeatable)")
    ap.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per case")
    args = ap.parse_args(argv)
    work = Path(args.keep or tempfile.mkdtemp(prefix="rmc-battery-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    where = setup(work)
    selected = [c for c in cases() if not args.only or any(o in c.name for o in args.only)]
    rows, failed = [], 0
    print(f"{len(selected)} cases; workspace {work}", file=sys.stderr)
    for i, case in enumerate(selected):
        case_dir = work / f"case{i:03d}"
        if case_dir.exists():
            shutil.rmtree(case_dir)
        case_dir.mkdir()
        here = {"c": case_dir, **where}
        make_files(case_dir, case.files, here)
        before = snapshot(case_dir, case.keep)
        models_before = {p.parent for p in case_dir.rglob("model.keras")}
        argv = []
        for a in case.argv:
            argv += TINY_TRAIN_FLAGS if a == "TINY" else [expand(a, here)]
        rc, err, secs = run_cli(argv, case_dir, args.timeout)
        problem = judge(case, rc, err, case_dir, before, models_before)
        failed += bool(problem)
        first = next((l for l in err.strip().splitlines() if l.strip()), "")
        first = first.replace(str(work), "W").replace("|", "\\|")
        rows.append((case.name, rc, secs, first[:150], problem))
        print(f"[{i + 1}/{len(selected)}] {'FAIL' if problem else 'ok  '} {rc} {secs:5.1f}s {case.name}: "
              f"{problem or first[:100]}", file=sys.stderr, flush=True)
    print(f"Hostile battery, {datetime.date.today()}: {len(rows) - failed} passed, {failed} failed "
          f"of {len(rows)} (python benchmarks/hostile_battery.py)\n")
    print("| case | exit | s | first line of stderr | verdict |\n|---|---|---|---|---|")
    for name, rc, secs, first, problem in rows:
        print(f"| {name.replace('|', '/')} | {rc} | {secs:.1f} | {first} | {'FAIL: ' + problem if problem else 'ok'} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
