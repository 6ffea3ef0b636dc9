"""How fast the command line answers: ``rmcompress --help`` and bad input, each a fresh process.

Every case runs ``--runs`` times (interleaved, in a fresh ``python -m rmcompress`` process each),
and the table gives the median and the slowest wall time, the exit status and whether the answer
came before TensorFlow loaded (the bad-input cases report before it; ``tests/cli/test_preflight.py``
pins that, this script measures the time). Prints a markdown table with the CPU it ran on.

    python benchmarks/cli_feedback.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu() -> str:
    """The CPU model and its AVX-512 / VNNI flags (from /proc/cpuinfo where there is one)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    wanted = [f for f in flags if f.startswith("avx512") or "vnni" in f]
    return f"{model} ({', '.join(sorted(set(wanted))) or 'no AVX-512'})"


def cases(tmp: Path) -> list[tuple[str, list[str]]]:
    bad = tmp / "bad.tsv"
    bad.write_text("text\tlabel\ngood film\t1\nodd film\t7\n")
    model = tmp / "model"
    model.mkdir()
    (model / "model.keras").write_bytes(b"")
    (model / "metadata.json").write_text(json.dumps({"format": "rmcompress.model", "task": "pointwise"}))
    return [
        ("rmcompress --help", ["--help"]),
        ("rmcompress train --help", ["train", "--help"]),
        ("train: missing data file", ["train", "--task", "pointwise", "--data", str(tmp / "none.tsv"),
                                      "--out", str(tmp / "o")]),
        ("train: labels not 0/1 with --loss bce", ["train", "--task", "pointwise", "--loss", "bce", "--data",
                                                   str(bad), "--out", str(tmp / "o")]),
        ("compress: bad recipe value", ["compress", "--model", str(model), "--recipe", str(tmp / "r.yaml"),
                                        "--data", str(bad), "--out", str(tmp / "o")]),
        ("evaluate: missing model", ["evaluate", "--model", str(tmp / "none"), "--data", str(bad)]),
    ]


PROBE = ("import sys, runpy; sys.argv = ['rmcompress'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('rmcompress', run_name='__main__')\n"
         "finally:\n    print('TF=%s' % ('tensorflow' in sys.modules), file=sys.stderr)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "r.yaml").write_text("passes:\n  - prune: {sparsity: 1.5}\n")
        todo = cases(tmp)
        times = {name: [] for name, _ in todo}
        status = {}
        for _ in range(args.runs):
            for name, argv in todo:
                t = time.perf_counter()
                p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                                   cwd=tmp, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
                times[name].append(time.perf_counter() - t)
                status[name] = (p.returncode, "TF=True" in p.stderr)
    print(f"CPU: {cpu()}; Python {platform.python_version()}; {args.runs} runs each, interleaved\n")
    print("| case | exit | TensorFlow loaded | median s | slowest s |")
    print("| --- | --- | --- | --- | --- |")
    for name, _ in todo:
        rc, tf_loaded = status[name]
        print(f"| {name} | {rc} | {'yes' if tf_loaded else 'no'} | {statistics.median(times[name]):.2f} "
              f"| {max(times[name]):.2f} |")


if __name__ == "__main__":
    main()
