"""``rmcompress compress``: model directory + recipe -> checked, measured SavedModel + TFLite."""
from __future__ import annotations

import sys

from rmcompress.commands._common import (add_column_flags, add_progress_args, columns_of, model_to_out_parser,
                                         progress_of)
from rmcompress.config.rules import integer


def add_parser(sub, parents):
    from rmcompress.compression.recipe import LEVELS, SHIPPED

    p = model_to_out_parser(sub, parents, "compress", help="compress a model with a recipe (level or YAML file)",
                            description="Compress a model with a recipe: passes (budget, attention, fuse, factorise, prune, "
                                        "cluster, quantise, length), then export to SavedModel + TFLite with a "
                                        "parity check, evaluation on the validation split and report.json.",
                            model_help="model directory (from train)", out_help="output directory to write")
    p.add_argument("--recipe", required=True, help=f"a level ({', '.join(LEVELS)}), a shipped recipe "
                   f"({', '.join(SHIPPED)}) or a recipe YAML file")
    p.add_argument("--data", required=True, help="data file of the model's task (split like training)")
    p.add_argument("--val-data", default=None, metavar="PATH",
                   help="validation file (parity, checks, the choices passes make, the report): all of --data "
                        "then trains and the recipe's split settings are not used [default: split off --data]")
    p.add_argument("--seed", type=integer, default=None,
                   help="seed of what the passes draw (batch order, initialisation, word-replacement variants, "
                        "calibration rows); the split keeps its own [default: the split's seed: the recipe's "
                        "data.seed, else the model's training seed]")
    p.add_argument("--latency-runs", type=integer, default=None, help="timed runs (default: the recipe's; 0 skips)")
    p.add_argument("--unlabeled", default=None, metavar="PATH",
                   help="extra texts (a text column; pairwise: pairs) the source model scores and the "
                        "budget pass distills on (recipes whose budget pass has distill > 0)")
    add_column_flags(p, title="data columns (a column not named here: as the model's training run named it)")
    add_progress_args(p)
    return p


def run(args) -> int:
    from rmcompress.compression.recipe import Recipe
    from rmcompress.data.loaders import load_for_model
    from rmcompress.models.layout import check_model_dir
    from rmcompress.data.vocab_fit import check_vocab_fits

    # bad input is reported before TensorFlow loads: the recipe, the model directory, the data
    recipe = Recipe.resolve(args.recipe)
    metadata = check_model_dir(args.model)
    recipe.check_model_file(args.model)
    check_vocab_fits(args.model, metadata)
    data = load_for_model(args.data, metadata, training_columns=True, columns=columns_of(args))
    val_data = None if args.val_data is None else load_for_model(args.val_data, metadata, training_columns=True,
                                                                 columns=columns_of(args))
    from rmcompress.compression.pipeline import compress
    from rmcompress.evaluation.table import format_table

    report = compress(args.model, recipe, data, args.out, overwrite=args.overwrite,
                      latency_runs=args.latency_runs, log=None if args.quiet else lambda m: print(m, file=sys.stderr),
                      unlabeled=args.unlabeled, val_data=val_data, seed=args.seed, **progress_of(args))
    print(format_table([report]))
    extras = []
    for key, fmt in (("size_ratio", "{:.1f}x smaller"), ("gzip_ratio", "{:.1f}x smaller gzipped"),
                     ("latency_speedup", "{:.1f}x faster at max length"),
                     ("latency_speedup_real_length", "{:.1f}x faster at real lengths"),
                     ("accuracy_drop_points", "accuracy drop {:+.2f} points")):
        if report.get(key) is not None:
            extras.append(fmt.format(report[key]))
    print(f"vs the source float32 TFLite: {', '.join(extras)}")
    print(f"wrote {args.out}")
    return 0
