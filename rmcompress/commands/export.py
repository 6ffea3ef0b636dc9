"""``rmcompress export``: model directory -> SavedModel + TFLite, parity-checked and measured."""
from __future__ import annotations

from rmcompress.config.rules import integer


def add_parser(sub, parents):
    from rmcompress.config.choices import QUANTIZE_MODES

    from rmcompress.commands._common import model_to_out_parser

    p = model_to_out_parser(sub, parents, "export", help="export a model directory to SavedModel/TFLite",
                            description="Export to SavedModel and/or TFLite; checks parity with the Keras model.",
                            model_help="model directory (from train/compress)", out_help="export directory to write")
    p.add_argument("--format", default="savedmodel,tflite", help="comma-separated: savedmodel,tflite")
    p.add_argument("--quantize", default="none", choices=QUANTIZE_MODES)
    p.add_argument("--latency-runs", type=integer, default=200)
    return p


def run(args) -> int:
    from rmcompress.models.layout import check_model_dir
    from rmcompress.data.vocab_fit import check_vocab_fits

    check_vocab_fits(args.model, check_model_dir(args.model))  # bad input is reported before TensorFlow loads
    from rmcompress.evaluation.table import format_table
    from rmcompress.export.exporter import export_model

    report = export_model(args.model, args.out, args.format, args.quantize, overwrite=args.overwrite,
                          latency_runs=args.latency_runs)
    print(format_table([{"name": str(args.out), **report}]))
    print(f"wrote {args.out}")
    return 0
