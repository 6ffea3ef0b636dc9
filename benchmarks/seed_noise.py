"""Benchmark: how far apart two trainings of the same dense model are on the protocol's test split,
beside how far each compressed model is from its own source.

Reads a :mod:`benchmarks.compress_levels` output folder (``OUT/work/TASK-sSEED/``: the dense model
directory ``dense/``, its float32 TFLite file ``by-hand/float32.tflite`` and one directory per
recipe with its ``model.tflite``). On the test split of :func:`benchmarks.common.protocol_splits`,
every file scored with its own tokenizer:

- **dense vs dense**: for every pair of seeds, the difference of the float32 files' test quality
  (points) and the share of test decisions on which they differ (pointwise: the sign of the reward;
  pairwise: each pair's order);
- **compressed vs its source**: for every recipe and seed, the test drop against that seed's
  float32 file, the share of decisions that differ from it, and the paired standard error of the
  drop, ``100 * sd(c_src - c) / sqrt(n)`` (:func:`rmcompress.metrics.paired_drop_se`).

- **per pass** (validation, from each recipe run's ``report.json``): the drop and the share of the
  source's decisions kept after every pass (``passes[i].validation``, the compress ledger).

Mean +- sd over the seeds (the pairs). A retrained (budget) model differs from its source on about
as many decisions as a second training of the source does; then its drop carries the spread of
one training to the next, which a mean over three seeds shrinks by sqrt(3) only.

    python benchmarks/seed_noise.py --runs OUT --task sst2 [--out FILE.md]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def decisions(path: Path, tokenizer, data) -> tuple[np.ndarray, np.ndarray]:
    """``(decision per row, correct per row)`` of the TFLite file ``path`` on ``data``."""
    from rmcompress.data.pipeline import encode
    from rmcompress.metrics import correct_rows
    from rmcompress.runtime.tflite import TFLiteRunner

    runner, enc = TFLiteRunner(path), encode(data, tokenizer)
    if data.task == "pairwise":
        scores = (runner.score(enc.chosen), runner.score(enc.rejected))
        return scores[0] > scores[1], correct_rows("pairwise", scores)
    s = runner.score(enc.ids)
    return s > 0, correct_rows("pointwise", s, enc.labels)


def _ms(values, fmt="{:.2f}") -> str:
    return fmt.format(statistics.mean(values)) + (
        " ± " + fmt.format(statistics.stdev(values)) if len(values) > 1 else "")


def measure(runs: Path, task: str) -> str:
    from common import protocol_splits
    from rmcompress.metrics import paired_drop_se
    from rmcompress.models.modeldir import load_model_dir

    test = protocol_splits(task).test
    seeds = sorted(int(p.name.rsplit("-s", 1)[1]) for p in (runs / "work").glob(f"{task}-s*"))
    src, per_recipe = {}, {}
    for s in seeds:
        work = runs / "work" / f"{task}-s{s}"
        src[s] = decisions(work / "by-hand" / "float32.tflite", load_model_dir(work / "dense").tokenizer, test)
        for d in sorted(p for p in work.iterdir() if (p / "model.tflite").is_file() and (p / "model").is_dir()):
            dec, ok = decisions(d / "model.tflite", load_model_dir(d / "model").tokenizer, test)
            per_recipe.setdefault(d.name, []).append({
                "drop": 100 * (src[s][1].mean() - ok.mean()), "flips": 100 * np.mean(dec != src[s][0]),
                "se": paired_drop_se(src[s][1], ok)})
    lines = [f"**{task}** (test: {len(test)} rows; seeds {', '.join(map(str, seeds))})", "",
             "| compared | runs | test difference (points) | decisions that differ | paired se of the difference |",
             "| --- | --- | --- | --- | --- |"]
    pairs = [{"drop": 100 * (src[a][1].mean() - src[b][1].mean()), "flips": 100 * np.mean(src[a][0] != src[b][0]),
              "se": paired_drop_se(src[a][1], src[b][1])} for a, b in itertools.combinations(seeds, 2)]
    rows = [("dense seed a vs dense seed b (float32 files)", pairs)] + [
        (f"`{name}` vs its seed's float32 file", r) for name, r in per_recipe.items()]
    for name, r in rows:
        if not r:
            continue
        diff = [x["drop"] for x in r]
        if r is pairs:  # the sign of a pair's difference is arbitrary: its size
            diff = [abs(v) for v in diff]
        lines.append(f"| {name} | {len(r)} | {_ms(diff)} | {_ms([x['flips'] for x in r], '{:.1f}')}% | "
                     f"{_ms([x['se'] for x in r])} |")
    lines += ledger(runs, task, seeds, list(per_recipe))
    return "\n".join(lines)


def ledger(runs: Path, task: str, seeds: list[int], recipes: list[str]) -> list[str]:
    """The per-pass validation table of every recipe (``passes[i].validation`` of its report)."""
    import json

    out = []
    for name in recipes:
        reports = [json.loads((runs / "work" / f"{task}-s{s}" / name / "report.json").read_text()) for s in seeds]
        notes = [[n for n in r["passes"] if "validation" in n] for r in reports]
        if not all(notes) or len({tuple(n["pass"] for n in x) for x in notes}) != 1:
            continue  # runs from before the ledger, or passes that differ by seed
        out += ["", f"`{name}`, validation after each pass (n = {reports[0]['n_examples']}; the last row: the "
                    ".tflite file)", "", "| after | drop (points) | source decisions kept |", "| --- | --- | --- |"]
        for i, first in enumerate(notes[0]):
            v = [x[i]["validation"] for x in notes]
            out.append(f"| {first['pass']} | {_ms([x['drop_points'] for x in v])} | "
                       f"{_ms([100 * x['decision_agreement'] for x in v], '{:.1f}')}% |")
        out.append(f"| the file | {_ms([r['accuracy_drop_points'] for r in reports])} | "
                   f"{_ms([100 * r['vs_source_decision_agreement'] for r in reports], '{:.1f}')}% |")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, help="a compress_levels.py --out folder")
    p.add_argument("--task", default="sst2", choices=("sst2", "hh"))
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args(argv)
    text = measure(Path(args.runs), args.task)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
