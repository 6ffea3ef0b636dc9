"""``rmcompress import``: a user's Keras model file + vocabulary -> a model directory."""
from __future__ import annotations

from rmcompress.config.rules import integer


def add_parser(sub, parents):
    from rmcompress.config.choices import KEEP_SIDES, POINTWISE_LOSSES, TASKS, TOKENIZER_MODES

    p = sub.add_parser(
        "import", parents=parents, help="bring your own Keras model (Keras 3 or tf_keras) in",
        description="Convert a Keras 3 or tf_keras model (.keras or .h5; token ids [batch, seq] -> reward "
                    "[batch, 1] or [batch]) to the suite's tf_keras format, checked to 1e-5 on random ids, "
                    "and write a model directory that export, evaluate and report take; writes report.json. "
                    "Unsupported layers are refused by name.")
    p.add_argument("--model", required=True, help="a .keras or .h5 model file (Keras 3 or tf_keras)")
    p.add_argument("--vocab", required=True,
                   help="vocab.txt (one WordPiece token a line, id = line - 1) or a Hugging Face tokenizer.json")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--seq-len", type=integer, default=None,
                   help="tokens per text (default: the model's input length; needed when that is free)")
    p.add_argument("--lowercase", dest="lowercase", action="store_true", default=None,
                   help="lowercase texts before tokenising (default: as tokenizer.json says, else yes)")
    p.add_argument("--no-lowercase", dest="lowercase", action="store_false", help="keep the case of texts")
    p.add_argument("--truncate", choices=KEEP_SIDES, default=None,
                   help="which end of a long text to keep (default: start pointwise, end pairwise)")
    p.add_argument("--tokenizer-mode", choices=TOKENIZER_MODES, default=None,
                   help="wordpiece ([PAD] [UNK] first) or bert ([CLS] text [SEP]); default: from the vocabulary")
    p.add_argument("--loss", choices=POINTWISE_LOSSES, default=None,
                   help="pointwise only: what the reward means for evaluation: bce (a logit, default), "
                        "mse or mae (a regression)")
    return p


def run(args) -> int:
    import sys

    from rmcompress.models.importing import import_model
    from rmcompress.evaluation.table import format_table

    report = import_model(args.model, args.vocab, args.task, args.out, seq_len=args.seq_len,
                          lowercase=args.lowercase, loss=args.loss,
                          truncate=args.truncate, tokenizer_mode=args.tokenizer_mode,
                          overwrite=args.overwrite)
    print(format_table([{"name": str(args.out), **{k: v for k, v in report.items() if k != "notes"}}]))
    for note in report.get("notes", []):
        print(f"rmcompress import: note: {note}", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0
