"""Benchmark: training steps on batches grouped by length against padded batches, timed interleaved.

For each model directory and the protocol's training split of its task
(:func:`benchmarks.common.protocol_splits`), one training loop
(:class:`rmcompress.training.model.RewardTrainingModel`, AdamW at a small constant rate) runs
blocks of ``--steps`` steps, alternating the padded stream (every batch ``[B, seq_len]``) and the
stream grouped by length (:func:`rmcompress.data.pipeline.batch_by_length` with the slack
:func:`rmcompress.training.lengths.find_slack` finds), ``--rounds`` blocks each, the first of each
round's pair swapped so neither always runs first. A block's time is from the end of its 3rd step
to the end of its last (tracing and the shuffle buffer left out). Reported: ms per step of each
stream (mean and spread over the rounds), their ratio per round, and the mean token length of a
batch of each stream.

``--scoring-rows N``: the teacher's scoring of distillation rows too, on the first ``N`` training rows:
``model.predict`` of the padded rows against :func:`rmcompress.training.distill.teacher_outputs`
(length-sorted batches cut to their rows' tokens, its slack check included), ``--rounds`` times
each, alternating; reported with the largest difference of their rewards.

    python benchmarks/group_by_length.py --model minilm=DIR --model transformer=DIR2 --task sst2 --out OUT

Writes ``OUT/group_by_length.json`` and prints a markdown table.
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

from rmcompress._keras import keras  # noqa: E402


class StepTimer(keras.callbacks.Callback):
    """Seconds from the end of batch ``skip`` to the end of the last batch of one ``fit``."""

    def __init__(self, skip: int = 3):
        super().__init__()
        self.skip, self.start, self.end, self.batches = skip, None, None, 0

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.skip:
            self.start = time.perf_counter()
        self.end = time.perf_counter()
        self.batches = batch + 1

    def per_step(self) -> float:
        return (self.end - self.start) / max(1, self.batches - self.skip)


def batch_lengths(ds, n: int) -> float:
    """Mean second dimension of the first ``n`` batches' ids."""
    from rmcompress.data.pipeline import _id_arrays

    return float(np.mean([next(iter(_id_arrays(b).values())).shape[1] for b in ds.take(n)]))


def run_model(name: str, model_dir: Path, proto, args) -> dict:
    from rmcompress.data.pipeline import all_ids, encode
    from rmcompress.models.modeldir import load_model_dir
    from rmcompress.training.finetune import make_optimizer
    from rmcompress.training.lengths import find_slack, row_lengths
    from rmcompress.training.model import RewardTrainingModel
    from rmcompress.training.tasks import make_task

    bundle = load_model_dir(model_dir)
    enc = encode(proto.train, bundle.tokenizer)
    slack = find_slack(bundle.model, enc)
    loss = bundle.metadata.get("loss") or ("pairwise" if bundle.task == "pairwise" else "bce")
    keras.utils.set_random_seed(0)
    wrapper = RewardTrainingModel(bundle.model, make_task(bundle.task, loss))
    wrapper.compile(optimizer=make_optimizer(1e-6, args.steps * args.rounds * 2, "constant", 0.0, 0.0))
    streams = {"padded": enc.dataset(args.batch_size, shuffle=True, seed=0, repeat=True, group_by_length=False),
               "grouped": enc.dataset(args.batch_size, shuffle=True, seed=0, repeat=True, group_by_length=True,
                                      slack=slack)}
    times = {k: [] for k in streams}
    for r in range(args.rounds if args.steps else 0):
        for mode in (("padded", "grouped") if r % 2 == 0 else ("grouped", "padded")):
            timer = StepTimer()
            wrapper.fit(streams[mode], steps_per_epoch=args.steps, epochs=1, callbacks=[timer], verbose=0)
            times[mode].append(timer.per_step() * 1000.0)
            print(f"[{time.strftime('%H:%M:%S')}] {name} round {r} {mode}: {times[mode][-1]:.1f} ms/step",
                  file=sys.stderr, flush=True)
    ratios = [p / g for p, g in zip(times["padded"], times["grouped"])]
    ids = all_ids(enc)
    scoring = score_times(bundle.model, ids[:args.scoring_rows], args.rounds) if args.scoring_rows else None
    return {"scoring": scoring, "model": name, "dir": str(model_dir), "task": bundle.task, "seq_len": int(ids.shape[1]),
            "rows": len(enc), "mean_tokens": float(np.mean(row_lengths(all_ids(enc)))), "slack": slack,
            "batch_length": {k: batch_lengths(ds, 200) for k, ds in streams.items()},
            "ms_per_step": times, "speedup": ratios, "batch_size": args.batch_size, "steps": args.steps}


def score_times(model, ids: np.ndarray, rounds: int) -> dict:
    """Seconds of padded ``predict`` and of ``teacher_outputs`` on ``ids``, interleaved."""
    from rmcompress.training.distill import teacher_outputs

    times: dict = {"padded": [], "by_length": []}
    for r in range(rounds):
        for mode in (("padded", "by_length") if r % 2 == 0 else ("by_length", "padded")):
            t = time.perf_counter()
            if mode == "padded":
                padded = model.predict(ids, batch_size=512, verbose=0).reshape(-1)
            else:
                cut = teacher_outputs(model, ids)[0]
            times[mode].append(time.perf_counter() - t)
            print(f"[{time.strftime('%H:%M:%S')}] scoring round {r} {mode}: {times[mode][-1]:.1f} s",
                  file=sys.stderr, flush=True)
    return {"rows": len(ids), "seconds": times, "speedup": [p / c for p, c in zip(times["padded"], times["by_length"])],
            "max_abs_diff": float(np.max(np.abs(padded - cut)))}


def table(rows: list[dict]) -> str:
    out = ["| model | task | tokens per text (mean) | batch length: padded / grouped | ms per step: padded | "
           "grouped | speed-up |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if not r["speedup"]:
            continue
        p, g, s = (np.array(r["ms_per_step"]["padded"]), np.array(r["ms_per_step"]["grouped"]),
                   np.array(r["speedup"]))
        out.append(f"| {r['model']} | {r['task']} | {r['mean_tokens']:.1f} | {r['batch_length']['padded']:.0f} / "
                   f"{r['batch_length']['grouped']:.1f} | {p.mean():.0f} ± {p.std(ddof=1):.0f} | "
                   f"{g.mean():.0f} ± {g.std(ddof=1):.0f} | {s.mean():.2f} ± {s.std(ddof=1):.2f}x |")
    return "\n".join(out)


def main(argv=None) -> int:
    from common import protocol_splits
    from compress_levels import cpu

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, help="NAME=MODEL_DIR (repeatable)")
    p.add_argument("--task", default="sst2", choices=["sst2", "hh"])
    p.add_argument("--steps", type=int, default=40, help="steps per timed block (0: time the scoring only)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--scoring-rows", type=int, default=0, help="time the teacher's scoring on this many rows too")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    proto = protocol_splits(args.task)
    rows = []
    for spec in args.model:
        name, _, model_dir = spec.partition("=")
        rows.append(run_model(name, Path(model_dir), proto, args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu(), "args": vars(args), "rows": rows}
    (out / "group_by_length.json").write_text(json.dumps(result, indent=1))
    print(f"{result['cpu']}\n\n{table(rows)}")
    for r in rows:
        if r["scoring"]:
            sc = r["scoring"]
            pad, cut, ratio = (np.array(sc["seconds"]["padded"]), np.array(sc["seconds"]["by_length"]),
                               np.array(sc["speedup"]))
            print(f"{r['model']}: scoring {sc['rows']} rows: padded {pad.mean():.1f} ± {pad.std(ddof=1):.1f} s, "
                  f"by length {cut.mean():.1f} ± {cut.std(ddof=1):.1f} s, {ratio.mean():.2f} ± "
                  f"{ratio.std(ddof=1):.2f}x; largest reward difference {sc['max_abs_diff']:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
