"""Benchmark: where the time of TFLite files goes, op type by op type.

Each file is profiled with :func:`rmcompress.evaluation.op_profile.profile_ops` (every op cut into a
one-op model and timed on the values it saw in a full run; LiteRT, batch 1, one thread, XNNPACK on)
on the same random token ids at ``--tokens`` tokens (as ``remeasure_latency.py`` times whole files),
``--rounds`` times with the files interleaved, each op's fastest round kept
(:func:`~rmcompress.evaluation.op_profile.fastest_over_rounds`). Reported per file: microseconds
summed by op type and dtype, its share of the file's summed time, and that sum against the first
file's (the sum of one-op times is above a whole-model run, which pays one invoke; the shares and
ratios are what the table is for).

    python benchmarks/op_profile_files.py --tflite minilm=OUT/exports/minilm/model.tflite \\
        compressed=OUT/models/minilm-pretrained-aggressive-s0/model.tflite --out OUT_PROFILE

Writes ``OUT/op_profile_NAME.csv`` (every op) and ``OUT/op_profile.json`` (the summary) and prints a
markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def profile_files(files: dict[str, Path], tokens: int, rounds: int, runs: int, seed: int = 0) -> dict:
    """``{name: every op's table}`` of the files, the fastest of ``rounds`` interleaved rounds."""
    from rmcompress.evaluation.op_profile import fastest_over_rounds, profile_ops

    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 20000, size=(1, tokens)).astype(np.int32)
    content = {name: Path(path).read_bytes() for name, path in files.items()}
    tables: dict[str, list] = {name: [] for name in files}
    for r in range(rounds):
        for name in (list(files) if r % 2 == 0 else list(files)[::-1]):
            tables[name].append(profile_ops(content[name], ids, runs=runs))
            print(f"[{time.strftime('%H:%M:%S')}] round {r} {name}: {tables[name][-1]['us'].sum():.0f} us",
                  file=sys.stderr, flush=True)
    return {name: fastest_over_rounds(t) for name, t in tables.items()}


def summary(tables: dict) -> list[dict]:
    """Per file and (op, dtype): count, microseconds, share of the file's sum."""
    from rmcompress.evaluation.op_profile import summarise

    rows = []
    for name, table in tables.items():
        for _, r in summarise(table).iterrows():
            rows.append({"file": name, "op": r["op"], "dtype": r["dtype"], "count": int(r["count"]),
                         "us": float(r["us"]), "share": float(r["share"]), "delegated": int(r["delegated"])})
    return rows


def markdown(rows: list[dict], names: list[str], top: int) -> str:
    import pandas as pd

    df = pd.DataFrame(rows)
    totals = df.groupby("file")["us"].sum()
    out = [f"| file | summed op time (us) | vs {names[0]} |", "| --- | ---: | ---: |"]
    for name in names:
        out.append(f"| {name} | {totals[name]:.0f} | {totals[names[0]] / totals[name]:.1f}x |")
    for name in names:
        out += ["", f"**{name}**", "", "| op | dtype | count | us | share | delegated |",
                "| --- | --- | ---: | ---: | ---: | ---: |"]
        part = df[df["file"] == name].sort_values("us", ascending=False).head(top)
        for _, r in part.iterrows():
            out.append(f"| {r['op']} | {r['dtype']} | {r['count']} | {r['us']:.1f} | {100 * r['share']:.1f}% | "
                       f"{r['delegated']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    from compress_levels import cpu

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tflite", nargs="+", required=True, help="NAME=FILE.tflite; the first is the reference")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--runs", type=int, default=100, help="timed invocations of each one-op model")
    p.add_argument("--top", type=int, default=12, help="op types listed per file")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from rmcompress import _quiet

    _quiet.silence()
    files = {}
    for spec in args.tflite:
        name, sep, path = spec.partition("=")
        if not sep:
            p.error(f"--tflite {spec!r}: write NAME=FILE.tflite")
        files[name] = Path(path)
    tables = profile_files(files, args.tokens, args.rounds, args.runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(out / f"op_profile_{name}.csv", index=False)
    rows = summary(tables)
    result = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu(), "args": vars(args),
              "files": {k: str(v) for k, v in files.items()}, "rows": rows}
    (out / "op_profile.json").write_text(json.dumps(result, indent=1))
    print(f"{result['cpu']}\n\n{markdown(rows, list(files), args.top)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
