"""``rmcompress evaluate``: accuracy, size, FLOPs, params, latency of any artifact on a data file."""
from __future__ import annotations

from rmcompress.commands._common import add_column_flags, columns_of
from rmcompress.config.rules import integer


def add_parser(sub, parents):
    p = sub.add_parser("evaluate", parents=parents, help="evaluate a model directory, SavedModel or .tflite",
                       description="Evaluate an artifact on a data file (quality, size, FLOPs, latency).")
    p.add_argument("--model", required=True, help="model directory, SavedModel directory, export directory or .tflite")
    p.add_argument("--data", required=True, help="data file of the model's task")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--latency-runs", type=integer, default=200, help="timed runs (0: skip latency)")
    p.add_argument("--max-examples", type=integer, default=None, help="evaluate a seeded random subset")
    add_column_flags(p)
    return p


def run(args) -> int:
    import sys

    from rmcompress.data.loaders import data_notes, load_for_model
    from rmcompress.models.layout import resolve_artifact
    from rmcompress.data.vocab_fit import check_vocab_fits

    kind, path, metadata = resolve_artifact(args.model)  # bad input is reported before TensorFlow loads
    if kind == "keras":
        check_vocab_fits(path, metadata)
    data = load_for_model(args.data, metadata, where=path, columns=columns_of(args))
    from rmcompress.evaluation.evaluate import evaluate
    from rmcompress.evaluation.table import format_table
    from rmcompress.fileio import dumps_json

    report = evaluate(args.model, data, latency_runs=args.latency_runs, max_examples=args.max_examples)
    for note in data_notes(args.data, report.get("skipped_rows"), report.get("truncated_texts", 0)):
        print(f"rmcompress evaluate: note: {note}", file=sys.stderr)
    if args.json:
        print(dumps_json(report))
    else:
        print(format_table([{"name": report["artifact"], **report}]))
    return 0
