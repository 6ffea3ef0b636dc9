"""Which distillation data helps a compressed MiniLM: the same steps on the same texts, or on more texts.

Starts from a compressed model (e.g. the float Keras model ``pretrained-aggressive`` writes to
``OUT/models/minilm-pretrained-aggressive/model``) and continues distilling it from the fine-tuned
MiniLM for ``--steps`` steps (``rmcompress train --init STUDENT --teacher TEACHER``), once per arm:

- ``same``:  the training rows + the unlabeled texts it was compressed with (more steps only);
- ``more``:  the same + every other non-validation row of the SST-2 file (labels dropped) + ``--copies``
             word-replacement variants (:mod:`rmcompress.data.augment`, neighbours from the teacher's
             input embedding) of every full training sentence (a text contained in no other text).

Each arm is scored on the validation sentences: accuracy, decision agreement with the teacher and the
mean squared difference of the reward logits (float Keras models; the teacher as its TFLite export).

Usage (the run the README quotes; OUT is a ``benchmarks/pretrained.py`` output folder)::

    python benchmarks/continue_distill.py --bench OUT --out saved_models/continue_distill --steps 1500
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import artifact_scores  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def more_texts(sst2: Path, data: Path, teacher: Path, copies: int, out: Path) -> Path:
    """The unused non-validation rows + variants of every full training sentence, as one text file."""
    import pandas as pd

    from rmcompress.data.augment import augment_texts, neighbour_table, token_vectors
    from rmcompress.data.loaders import load_pointwise
    from rmcompress.data.split import drop_contained, root_indices
    from rmcompress.models.modeldir import load_model_dir

    texts = load_pointwise(sst2).texts
    norm = [t.strip().lower() for t in texts]
    read = lambda name: set(pd.read_csv(data / name, sep="\t", quoting=3).iloc[:, 0].astype(str).str.strip().str.lower())
    val, used = read("val.tsv"), read("train.tsv") | read("unlabeled.tsv")
    val_idx = np.array([i for i, t in enumerate(norm) if t in val])
    rest = drop_contained(texts, np.array([i for i in range(len(texts)) if norm[i] not in val]), val_idx)
    unused = [texts[i] for i in rest if norm[i] not in used]
    roots = set(root_indices(texts).tolist())
    sentences = [texts[i] for i in rest if i in roots]
    bundle = load_model_dir(teacher)
    vocab = bundle.tokenizer.vocabulary
    table = neighbour_table(token_vectors(bundle.model, len(vocab)), vocab)
    variants = augment_texts(sentences, table, copies=copies, p=0.3, min_words=1, seed=0)
    log(f"{len(unused)} unused rows, {len(sentences)} full training sentences -> {len(variants)} variants")
    base = pd.read_csv(data / "unlabeled.tsv", sep="\t", quoting=3).iloc[:, 0].astype(str).tolist()
    path = out / "unlabeled_more.tsv"
    pd.DataFrame({"sentence": base + unused + variants}).to_csv(path, sep="\t", index=False)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", required=True, type=Path, help="a benchmarks/pretrained.py --out folder")
    p.add_argument("--student", type=Path, help="default: BENCH/models/minilm-pretrained-aggressive/model")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--sst2", type=Path, default=ROOT.parent / "shared" / "data" / "sst2" / "train.tsv")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--arms", default="same,more")
    args = p.parse_args(argv)
    import pandas as pd

    data, teacher = args.bench / "data", args.bench / "models" / "minilm"
    student = args.student or args.bench / "models" / "minilm-pretrained-aggressive" / "model"
    args.out.mkdir(parents=True, exist_ok=True)
    val = pd.read_csv(data / "val.tsv", sep="\t", quoting=3)
    texts, y = val.iloc[:, 0].astype(str).tolist(), val.iloc[:, 1].to_numpy()
    t = artifact_scores(args.bench / "exports" / "minilm" / "model.tflite", texts)
    s0 = artifact_scores(student, texts)
    rows = [{"arm": "start", "accuracy": float(((s0 > 0) == y).mean()),
             "agreement": float(((s0 > 0) == (t > 0)).mean()), "mse": float(((s0 - t) ** 2).mean())}]
    for arm in args.arms.split(","):
        unl = data / "unlabeled.tsv" if arm == "same" else more_texts(args.sst2, data, teacher, args.copies, args.out)
        dest = args.out / arm
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "rmcompress", "train", "--init", str(student), "--teacher", str(teacher),
                        "--data", str(data / "train.tsv"), "--unlabeled", str(unl), "--task", "pointwise",
                        "--distill-weight", "0.9", "--distill-loss", "mse", "--epochs", "100",
                        "--max-steps", str(args.steps), "--batch-size", "32", "--learning-rate", "1e-4",
                        "--patience", "0", "--out", str(dest), "--overwrite"], cwd=ROOT, check=True)
        s = artifact_scores(dest, texts)
        rows.append({"arm": arm, "distill_texts": int(len(pd.read_csv(unl, sep="\t", quoting=3))),
                     "accuracy": float(((s > 0) == y).mean()), "agreement": float(((s > 0) == (t > 0)).mean()),
                     "mse": float(((s - t) ** 2).mean()), "seconds": round(time.time() - t0, 1)})
        log(json.dumps(rows[-1]))
        (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                          "rows": rows}, indent=1))
    print("| arm | distillation texts | accuracy | agreement with MiniLM | MSE of logits |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arm']} | {r.get('distill_texts', '')} | {r['accuracy']:.4f} | {r['agreement']:.4f} | {r['mse']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
