"""``rmcompress sensitivity``: which layers and groups a model can lose to int8 or pruning."""
from __future__ import annotations

from rmcompress.commands._common import add_column_flags, model_data_parser, read_model_data
from rmcompress.config.choices import SENSITIVITY_DEFAULTS
from rmcompress.config.rules import integer


def add_parser(sub, parents):
    p = model_data_parser(sub, parents, "sensitivity",
                          help="validation drop per layer made int8 (or 4-bit) alone and per group pruned 50% alone",
                          model_help="model directory (from train, import or compress)",
                          description="For every layer, the validation drop (and decision agreement with the "
                                      "float model) when only that layer is int8, and (against the "
                                      "dynamic-range file) when only its weights are 4-bit; for every prunable group, "
                                      "when only half of its units (the smallest weights) are removed. Prints "
                                      "the table, worst first; with --out also writes sensitivity.csv, "
                                      "sensitivity.md, sensitivity.png and report.json.")
    p.add_argument("--out", default=None, help="directory to write with the table and the bar chart")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--max-examples", type=integer, default=SENSITIVITY_DEFAULTS["max_examples"], metavar="N",
                   help="validation rows (pairs) scored per variant")
    p.add_argument("--calibration-samples", type=integer, default=SENSITIVITY_DEFAULTS["calibration_samples"],
                   metavar="N",
                   help="training rows that calibrate the int8 ranges")
    p.add_argument("--only", choices=("int8", "int4", "prune"), default=None,
                   help="measure only one kind [default: all three]")
    add_column_flags(p, title="data columns (a column not named here: as the model's training run named it)")
    return p


def run(args) -> int:
    _, data = read_model_data(args)  # bad input is reported before TensorFlow loads
    if args.out:
        from rmcompress.fileio import check_destination

        check_destination(args.out, args.overwrite, inputs=[args.model, args.data])
    from rmcompress.compression.sensitivity import sensitivity, text_table, write

    df = sensitivity(args.model, data, args.max_examples, args.calibration_samples,
                     int8=args.only in (None, "int8"), prune=args.only in (None, "prune"),
                     int4=args.only in (None, "int4"))
    print(text_table(df))
    if args.out:
        from pathlib import Path

        from rmcompress.fileio import atomic_dir

        meta = {"model": str(args.model), "data": str(args.data)}
        with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
            written = write(df, tmp, meta)
        for path in written:
            print(f"wrote {Path(args.out) / path.relative_to(tmp)}")
    return 0
