"""``rmcompress report``: gather report.json rows of many directories into one table + Pareto plots."""
from __future__ import annotations


def add_parser(sub, parents):
    p = sub.add_parser("report", parents=parents, help="one table (CSV, markdown) and Pareto plots from many runs",
                       description="Gather report.json rows from directories written by train/export/compress "
                                   "into one table; with --out also write report.csv, report.md and "
                                   "accuracy-vs-size / accuracy-vs-latency Pareto plots (PNG).")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="directories holding report.json")
    p.add_argument("--out", default=None, help="directory for report.csv, report.md, pareto_*.png")
    return p


def run(args) -> int:
    from rmcompress.evaluation.report import gather, write_report
    from rmcompress.evaluation.table import format_table

    df = gather(args.dirs)
    print(format_table(df.to_dict(orient="records")))
    if args.out:
        for path in write_report(df, args.out):
            print(f"wrote {path}")
    return 0
