"""Peak memory of the streamed training input against the size of the data file.

For each size (rows) a pointwise JSON-lines file of synthetic sentences is written to a temporary
directory; a child process then scans it (:func:`rmcompress.data.stream.scan`: every row checked,
counted, split by hash), trains the vocabulary on its bounded sample and takes one full pass of
tokenised training batches (:meth:`StreamedData.dataset`), and reports its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). ``--in-memory`` also measures the in-memory path
(``load_data`` + ``encode`` of the whole file) for contrast.

    python benchmarks/stream_memory.py --sizes 200000,1000000,2000000 --in-memory
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

WORDS = ("the a film movie plot actor story scene music script director cast was is felt seemed truly "
         "very rather quite good bad great awful dull fine superb boring moving funny weak strong long short "
         "and but with without every some").split()


def write_file(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` JSON lines ``{"text": 5-25 words, "label": 0/1}``."""
    import numpy as np

    rng = np.random.RandomState(seed)
    words = np.asarray(WORDS)
    with open(path, "w") as f:
        for start in range(0, rows, 10_000):
            n = min(10_000, rows - start)
            lengths = rng.randint(5, 26, n)
            labels = rng.randint(0, 2, n)
            picks = rng.randint(0, len(words), (n, 25))
            f.writelines(json.dumps({"text": " ".join(words[picks[i, :lengths[i]]]), "label": int(labels[i])}) + "\n"
                         for i in range(n))


CHILD = r"""
import json, resource, sys, time
from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
mode, path = sys.argv[1], sys.argv[2]
t = time.time()
if mode == "stream":
    from rmcompress.data.stream import scan
    s = scan(path, "pointwise", 0.1, label_kind="binary")
    tok = Tokenizer.train(s.vocab_sample, 8000, TokenizerConfig(64))
    rows = 0
    for ids, labels in s.dataset("train", tok, 256, shuffle=True, seed=0):
        rows += int(ids.shape[0])
else:
    from rmcompress.data.loaders import load_data
    from rmcompress.data.pipeline import encode
    d = load_data(path, "pointwise")
    tok = Tokenizer.train(d.texts, 8000, TokenizerConfig(64))
    rows = len(encode(d, tok))
print(json.dumps({"rows": rows, "seconds": time.time() - t,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(mode: str, target: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(target)], env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200000,1000000,2000000", help="rows per file, comma-separated")
    ap.add_argument("--in-memory", action="store_true", help="also measure the in-memory path")
    args = ap.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d')} {cpu_model()}, {os.cpu_count()} CPUs")
    print(f"{'rows':>10} {'file MiB':>9} {'path':>10} {'peak RSS MiB':>13} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (int(s) for s in args.sizes.split(",")):
            shard_dir = Path(tmp) / f"rows{rows}"
            shard_dir.mkdir()
            path = shard_dir / "data.jsonl"
            write_file(path, rows)
            mib = path.stat().st_size / 2 ** 20
            modes = [("stream", shard_dir)] + ([("in-memory", path)] if args.in_memory else [])
            for mode, target in modes:
                r = measure(mode, target)
                print(f"{rows:>10,} {mib:>9.1f} {mode:>10} {r['peak_mib']:>13,.0f} {r['seconds']:>8.1f}", flush=True)
            path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
