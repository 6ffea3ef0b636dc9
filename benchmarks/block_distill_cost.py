"""Benchmark: the training-step cost of block-wise distillation's on-the-fly teacher.

A MiniLM-shaped teacher (the ``bert`` graph, 6 blocks x 384, 12 heads, FFN 1536, 64 tokens, random
weights: the cost does not depend on them) and a student of the same graph pruned to about 13% of its
FLOPs (2 heads, 160 FFN units per block, as ``pretrained-aggressive`` leaves it), batch 32, training
steps of the one training model (:class:`rmcompress.training.model.RewardTrainingModel` with a
:class:`rmcompress.training.distill.DistillationTerm`): reward distillation alone against reward +
block distillation (the teacher's block outputs computed every batch). Each setting is timed
``--rounds`` times interleaved; the fastest round counts.

    python benchmarks/block_distill_cost.py --steps 15 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()

    import numpy as np

    from rmcompress._keras import keras, tf
    from rmcompress.models.archconfig import ArchConfig
    from rmcompress.models.architectures import build_reward_model
    from rmcompress.models.structure import count
    from rmcompress.training.distill import DistillSettings, DistillationTerm, block_scales
    from rmcompress.training.model import RewardTrainingModel

    base = dict(arch="bert", vocab_size=30522, seq_len=64, width=384, depth=6, heads=12, head_dim=32, ffn=1536,
                dropout=0.1, activation="gelu")
    teacher = build_reward_model(ArchConfig(**base))
    student = build_reward_model(ArchConfig(**{**base, "heads": 2, "ffn": 160}))
    rng = np.random.RandomState(0)
    ids = rng.randint(1000, 30000, size=(args.batch_size * 8, 64)).astype(np.int32)
    ids[:, 40:] = 0
    x = {"ids": ids, "teacher": rng.randn(len(ids)).astype(np.float32), "labeled": np.ones(len(ids), np.float32)}
    ds = tf.data.Dataset.from_tensor_slices((x, (rng.rand(len(ids)) > .5).astype(np.float32)))
    ds = ds.repeat().batch(args.batch_size)
    scale = block_scales(teacher, ids[:128])
    times: dict = {"rewards": [], "rewards+blocks": []}
    for _ in range(args.rounds):
        for name in times:
            blocks = name.endswith("blocks")
            s = DistillSettings(weight=0.9, blocks=1.0 if blocks else 0.0, block_teacher=teacher if blocks else None,
                                block_scale=scale if blocks else None)
            m = RewardTrainingModel(student, "pointwise", terms=[DistillationTerm(s)])
            m.compile(optimizer=keras.optimizers.Adam(1e-5))
            m.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace
            t = time.perf_counter()
            m.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
            times[name].append((time.perf_counter() - t) / args.steps)
    best = {k: min(v) for k, v in times.items()}
    print(json.dumps({"student_flops_fraction": count(student).flops / count(teacher).flops,
                      "seconds_per_step": best, "all_rounds": times,
                      "ratio": best["rewards+blocks"] / best["rewards"]}, indent=1))


if __name__ == "__main__":
    main()
