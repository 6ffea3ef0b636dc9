"""``rmcompress shrink``: gated model directory -> plain, physically smaller model directory."""
from __future__ import annotations

from rmcompress.commands._common import model_to_out_parser
from rmcompress.config.rules import number


def add_parser(sub, parents):
    p = model_to_out_parser(sub, parents, "shrink", help="remove closed gates: a physically smaller model",
                            description="Shrink a gated model directory (from `train --gated --no-shrink`): "
                                        "closed heads, FFN units, filters, hidden units, embedding columns, "
                                        "vocabulary rows and blocks are removed; writes report.json.",
                            model_help="gated model directory", out_help="model directory to write")
    p.add_argument("--budget-flops", type=number, default=None, metavar="F",
                   help="first choose the deterministic units to fit this FLOPs fraction of the dense model")
    p.add_argument("--budget-params", type=number, default=None, metavar="F",
                   help="first choose the deterministic units to fit this params fraction")
    return p


def run(args) -> int:
    from rmcompress.models.layout import check_model_dir
    from rmcompress.data.vocab_fit import check_vocab_fits

    check_vocab_fits(args.model, check_model_dir(args.model))  # bad input is reported before TensorFlow loads
    from rmcompress.structured.shrink import shrink_model_dir
    from rmcompress.evaluation.table import format_table

    report = shrink_model_dir(args.model, args.out, budget_flops=args.budget_flops,
                              budget_params=args.budget_params, overwrite=args.overwrite)
    print(format_table([{"name": str(args.out), **report}]))
    print(f"wrote {args.out}")
    return 0
