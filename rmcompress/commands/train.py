"""``rmcompress train``: data file -> trained reward model directory with report.json."""
from __future__ import annotations

import argparse
import sys

from rmcompress.config.choices import ARCHITECTURES


def add_parser(sub, parents):
    p = sub.add_parser("train", parents=parents, help="train a reward model on a data file",
                       description="Train a reward model; writes a model directory with report.json.")
    p.add_argument("--data", required=True, help="CSV, TSV, JSONL or Parquet file (optionally .gz)")
    p.add_argument("--task", required=True, choices=["pointwise", "pairwise"])
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (and discard an interrupted run's backup)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last completed epoch (backup in OUT.rmc-backup)")
    g = p.add_argument_group("architecture")
    g.add_argument("--arch", default="transformer", choices=ARCHITECTURES)
    g.add_argument("--width", type=int, default=64, help="embedding/model width")
    g.add_argument("--depth", type=int, default=2, help="transformer blocks")
    g.add_argument("--heads", type=int, default=4, help="attention heads per block")
    g.add_argument("--ffn", type=int, default=128, help="feed-forward units per block")
    g.add_argument("--filters", type=int, default=64, help="cnn filters per kernel size")
    g.add_argument("--kernel-sizes", type=_widths, default=[3, 4, 5], metavar="K,K,...",
                   help="cnn convolution widths, one parallel branch each (default 3,4,5; narrow widths "
                        "such as 1,2 give complexity-aware training cheaper filters to keep)")
    g.add_argument("--hidden", type=int, default=64, help="bow hidden units")
    g.add_argument("--head-hidden", type=int, default=0,
                   help="transformer/cnn: ReLU units between the pooling and the reward (gated like any "
                        "group: a pruned model can become a bag of embeddings with a hidden layer)")
    g.add_argument("--dropout", type=float, default=0.1)
    g = p.add_argument_group("pretrained start and distillation")
    g.add_argument("--backbone", default=None, metavar="PRESET_OR_DIR",
                   help="fine-tune a keras-nlp backbone (BERT family): a preset name or a local preset / "
                        "Hugging Face folder; its own vocabulary is used (--arch/--width/... are ignored)")
    g.add_argument("--backbone-match", choices=["source", "keras"], default="source",
                   help="GELU form and accent stripping: as the original checkpoint says (Hugging Face "
                        "config) or exactly as keras-nlp builds the backbone")
    g.add_argument("--init", default=None, metavar="MODEL_DIR",
                   help="start from a copy of this model directory (graph, weights, tokenizer)")
    g.add_argument("--teacher", default=None, metavar="MODEL_DIR",
                   help="distill: also match this model's rewards (pairwise: its margins)")
    g.add_argument("--distill-weight", type=float, default=0.5,
                   help="a in (1-a)*label_loss + a*distill_loss (default 0.5)")
    g.add_argument("--distill-loss", choices=["mse", "ce"], default="mse",
                   help="mse on rewards/margins, or ce: temperature-scaled cross-entropy (KL)")
    g.add_argument("--distill-temperature", type=float, default=1.0)
    g.add_argument("--distill-features", type=float, default=0.0, metavar="B",
                   help="pointwise: + B * mean_j ((u_j - v_j) / sigma_j)^2, the student's pooled features u "
                        "matching the teacher's v (same width, e.g. a pruned copy of the teacher); default 0")
    g.add_argument("--unlabeled", default=None, metavar="PATH",
                   help="extra texts scored only by the teacher (pointwise: a text column; "
                        "pairwise: chosen/rejected columns)")
    g.add_argument("--augment", type=int, default=0, metavar="K",
                   help="pointwise: also distill on K word-replacement variants of every training and "
                        "unlabeled text of >= 10 words (each word replaced with probability 0.3 by one of "
                        "its 8 nearest words in the teacher's input embedding), scored by the teacher")
    g = p.add_argument_group("tokeniser")
    g.add_argument("--seq-len", type=int, default=None, help="tokens per text (default 64 pointwise, 256 pairwise)")
    g.add_argument("--truncate", choices=["start", "end"], default=None,
                   help="which part of a long text to keep (default: start pointwise, end pairwise)")
    g.add_argument("--vocab-size", type=int, default=8000)
    g.add_argument("--no-lowercase", dest="lowercase", action="store_false")
    g = p.add_argument_group("data")
    g.add_argument("--text-column", default=None)
    g.add_argument("--label-column", default=None)
    g.add_argument("--val-fraction", type=float, default=0.1)
    g.add_argument("--split", dest="split_mode", choices=["random", "disjoint", "sentences"], default="random",
                   help="disjoint: drop training texts contained in a validation text (SST-2 phrases); "
                        "sentences: also draw validation only from full texts (not part of another)")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("optimisation")
    g.add_argument("--loss", choices=["bce", "mse", "mae"], default=None,
                   help="pointwise loss (default: bce for 0/1 labels, else mse)")
    g.add_argument("--center-coefficient", type=float, default=0.0, help="pairwise reward centering c")
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--max-steps", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--learning-rate", type=float, default=None,
                   help="peak AdamW rate after warm-up (default 1e-3; 3e-5 with --backbone/--init)")
    g.add_argument("--warmup-fraction", type=float, default=0.05, help="linear warm-up share of the steps")
    g.add_argument("--val-data", default=None, help="validation file (replaces the split of --data)")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--patience", type=int, default=2, help="early-stopping patience in epochs (0: off)")
    g = p.add_argument_group("complexity-aware training (any of these gates the model; it is shrunk at the end)")
    g.add_argument("--gated", action="store_true",
                   help="put hard-concrete gates on every prunable group (heads, FFN units, filters, "
                        "hidden units, embedding width, whole blocks)")
    g.add_argument("--flops-weight", type=float, default=0.0,
                   help="penalty mode: loss += W * E[FLOPs] / FLOPs_dense")
    g.add_argument("--params-weight", type=float, default=0.0,
                   help="penalty mode: loss += W * E[params] / params_dense (also gates vocabulary rows)")
    g.add_argument("--budget-flops", type=float, default=None, metavar="F",
                   help="budget mode: end at this fraction of the dense model's FLOPs (e.g. 0.25)")
    g.add_argument("--budget-params", type=float, default=None, metavar="F",
                   help="budget mode: end at this fraction of the dense model's params")
    g.add_argument("--budget-warmup", type=float, default=0.3,
                   help="fraction of the gated steps over which the budget target moves from 1.0 to F")
    g.add_argument("--budget-delay", type=float, default=0.5,
                   help="fraction of the gated steps trained dense before the target starts moving")
    g.add_argument("--finetune-fraction", type=float, default=None,
                   help="fraction of all steps spent fine-tuning the shrunk model "
                        "(default: 0.3 with uniform gates, 0.8 with --gate-init magnitude/taylor)")
    g.add_argument("--gate-learning-rate", type=float, default=0.05)
    g.add_argument("--gate-init", choices=["uniform", "magnitude", "taylor"], default="uniform",
                   help="with --init/--backbone: start the gates alike (uniform) or ranked by the "
                        "starting model's unit importance, so the least important units close first")
    g.add_argument("--gate-init-spread", type=float, default=None,
                   help="half-width of the ranked starting log_alpha range (around 3.0; default 4)")
    g.add_argument("--no-shrink", dest="shrink", action="store_false",
                   help="keep the gated model (shrink it later with `rmcompress shrink`)")
    return p


def _widths(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (argparse reports the ValueError as a bad --kernel-sizes)."""
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 3,4,5") from None
    if not ks:
        raise argparse.ArgumentTypeError("expected at least one width, e.g. 3,4,5")
    return ks


def interrupt_hint(args) -> str | None:
    """What the CLI says after Ctrl-C: how to continue (the backup survives an interruption)."""
    from rmcompress.fileio import backup_dir_for

    backup = backup_dir_for(args.out)
    if (backup / "manifest.json").is_file():
        return f"continue from the last completed epoch with the same command and --resume (backup in {backup})"
    return None


def train_config_from_args(args):
    from rmcompress.training.trainer import TrainConfig

    return TrainConfig.from_dict(vars(args))


def run(args: argparse.Namespace) -> int:
    from rmcompress.data.loaders import data_notes
    from rmcompress.evaluation.table import format_table
    from rmcompress.training.trainer import train

    cfg = train_config_from_args(args)
    result = train(args.data, cfg, args.out, overwrite=args.overwrite,
                   verbose=1 if sys.stdout.isatty() else 2, resume=args.resume, validation=args.val_data)
    for note in data_notes(args.data, result.report.get("skipped_rows"), result.report.get("truncated_texts", 0)):
        print(f"rmcompress train: note: {note}", file=sys.stderr)
    print(format_table([{"name": str(args.out), **result.report}]))
    print(f"wrote {args.out}")
    return 0
