"""``rmcompress report``: gather report.json rows of many directories into one table + Pareto plots."""
from __future__ import annotations


def add_parser(sub, parents):
    p = sub.add_parser("report", parents=parents, help="one table (CSV, markdown) and Pareto plots from many runs",
                       description="Gather report.json rows from directories written by train/export/compress "
                                   "into one table; with --out also write report.csv, report.md and "
                                   "accuracy-vs-size / accuracy-vs-latency Pareto plots (PNG) of the TFLite "
                                   "files that have an accuracy (a float export takes its model directory's; "
                                   "a compress run adds the float32 TFLite of its source), labelled by run "
                                   "directory.")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="directories holding report.json")
    p.add_argument("--out", default=None, help="directory to write with report.csv, report.md, pareto_*.png")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


def run(args) -> int:
    from pathlib import Path

    from rmcompress.evaluation.report import gather, write_report
    from rmcompress.evaluation.table import format_table
    from rmcompress.fileio import atomic_dir

    df = gather(args.dirs)
    print(format_table(df.to_dict(orient="records")))
    if args.out:
        with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
            written = write_report(df, tmp)
        for path in written:
            print(f"wrote {Path(args.out) / path.relative_to(tmp)}")
    return 0
