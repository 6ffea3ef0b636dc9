"""The overhead of multi-worker training on one machine: ``rmcompress train`` as one process
(``--strategy none``) and as two ``MultiWorkerMirroredStrategy`` workers on 127.0.0.1 (their own
``TF_CONFIG``, free ports), the same data, model, seed and global batch. Steps per second are the
report's ``steps / train_seconds`` (the fit alone: data loading, tokeniser training and the final
report are excluded); the table also gives the largest weight difference of the two models.

Both workers share this machine's cores, so the figure is the cost of the collective all-reduce
and of each worker's share of the batch, not a speed-up: on several machines every worker has its
own cores.

    python benchmarks/multiworker_overhead.py [--rows 4000] [--steps 60] [--arch transformer]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cli_feedback import cpu  # noqa: E402


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _train(out: Path, data: Path, flags: list[str], workers: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    cmd = [sys.executable, "-m", "rmcompress", "train", "--data", str(data), "--out", str(out), "--quiet", *flags]
    if workers == 1:
        subprocess.run([*cmd, "--strategy", "none"], env=env, check=True, capture_output=True, timeout=3600)
    else:
        ports = _ports(workers)
        procs = []
        for i in range(workers):
            tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                         "task": {"type": "worker", "index": i}}
            procs.append(subprocess.Popen([*cmd, "--strategy", "multiworker"],
                                          env={**env, "TF_CONFIG": json.dumps(tf_config)},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for p in procs:
            _, err = p.communicate(timeout=3600)
            if p.returncode:
                raise SystemExit(f"a worker failed: {err.decode()[-2000:]}")
    return json.loads((out / "report.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--arch", default="transformer")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    import numpy as np

    from rmcompress.data.synthetic import pointwise_frame
    from rmcompress.models.modeldir import load_model_dir

    flags = ["--arch", args.arch, "--max-steps", str(args.steps), "--epochs", "1", "--batch-size",
             str(args.batch_size), "--dropout", "0", "--patience", "0"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data.tsv"
        pointwise_frame(args.rows, seed=0).to_csv(data, sep="\t", index=False)
        rows = []
        for workers in (1, 2):
            report = _train(tmp / f"w{workers}", data, flags, workers)
            rows.append((workers, report["steps"], report["train_seconds"]))
        w1, w2 = (load_model_dir(tmp / f"w{n}").model.get_weights() for n in (1, 2))
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2))
    print(f"CPU: {cpu()}; {os.cpu_count()} cores; {args.arch}, {args.rows} rows, global batch "
          f"{args.batch_size}, {args.steps} steps\n")
    print("| processes | steps | fit seconds | steps/s | relative |")
    print("| --- | --- | --- | --- | --- |")
    base = rows[0][1] / rows[0][2]
    for workers, steps, seconds in rows:
        rate = steps / seconds
        print(f"| {workers} | {steps} | {seconds:.1f} | {rate:.2f} | {rate / base:.2f}x |")
    print(f"\nlargest weight difference, 2 workers vs 1: {diff:.1e}")


if __name__ == "__main__":
    main()
