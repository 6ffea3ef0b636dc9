"""``rmcompress score``: the reward of every text (pairwise: of both texts of every pair, and
their margin) of a data file or stdin, by any artifact, as JSON lines or CSV
(:mod:`rmcompress.evaluation.per_text`)."""
from __future__ import annotations

from rmcompress.commands._common import add_column_flags, columns_of

FORMATS = ("jsonl", "csv")
STDIN = "-"


def add_parser(sub, parents):
    p = sub.add_parser("score", parents=parents, help="print the reward of every text (or pair) of a file",
                       description="Score texts with an artifact: one row per text (pointwise: text, reward) or "
                                   "per pair (pairwise: chosen, rejected, reward_chosen, reward_rejected, margin).")
    p.add_argument("--model", required=True, help="model directory, SavedModel directory, export directory or .tflite")
    p.add_argument("--data", required=True,
                   help="texts to score: a data file (a text column; pairwise: chosen and rejected) or - for stdin")
    p.add_argument("--format", choices=FORMATS, default="jsonl", help="output format")
    p.add_argument("--out", default=None, help="write the rows to this file (default: stdout)")
    add_column_flags(p, ("text_column", "prompt_column", "chosen_column", "rejected_column"))
    return p


def run(args) -> int:
    import sys

    from rmcompress.data.loaders import data_notes, load_pairwise, load_texts
    from rmcompress.data.vocab_fit import check_vocab_fits
    from rmcompress.models.layout import resolve_artifact

    kind, path, metadata = resolve_artifact(args.model)  # bad input is reported before TensorFlow loads
    if kind == "keras":
        check_vocab_fits(path, metadata)
    source = "/dev/stdin" if args.data == STDIN else args.data
    columns = columns_of(args)
    if metadata["task"] == "pairwise":
        pair_columns = {k: v for k, v in columns.items() if k != "text_column"}
        data = load_pairwise(source, task_hint=f"{path} is a pairwise model", **pair_columns)
        for note in data_notes(source, data.skipped, data.truncated):
            print(f"rmcompress score: note: {note}", file=sys.stderr)
    else:
        data = load_texts(source, columns.get("text_column"))
    from rmcompress.evaluation.artifacts import open_artifact
    from rmcompress.evaluation.per_text import reward_rows

    text = format_rows(reward_rows(open_artifact(args.model), data), args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        from rmcompress.fileio import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


def format_rows(rows: list[dict], fmt: str) -> str:
    """JSON lines (one object a row, UTF-8 kept) or CSV with a header."""
    import csv
    import io
    import json

    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["text", "reward"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
