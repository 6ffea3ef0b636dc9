"""``rmcompress search``: the best recipe on an objective within a validation accuracy drop."""
from __future__ import annotations

import sys

from rmcompress.commands._common import add_column_flags, model_data_parser, read_model_data
from rmcompress.config.choices import SEARCH_DEFAULTS, SEARCH_OBJECTIVES, SEARCH_SPACE
from rmcompress.config.rules import integer, number


def _list(kind):
    def parse(text: str):
        return tuple(kind(v.strip()) for v in text.split(",") if v.strip())
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def _levels(text: str) -> tuple:
    """``none`` or a comma list of level names / recipe YAML files."""
    return () if text.strip() == "none" else _list(str)(text)


_levels.__name__ = "list of recipes"


def _onoff(v: str) -> bool:
    if v not in ("on", "off"):
        raise ValueError(v)
    return v == "on"


def _shown(values) -> str:
    """A default of the space as it is typed: ``1,0.5``, ``off,on``."""
    return ",".join(("on" if v else "off") if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)
                    for v in values)


def add_parser(sub, parents):
    p = model_data_parser(sub, parents, "search",
                          help="search recipes for the best model within an accuracy drop",
                          model_help="model directory (from train or import)",
                          description="Search the recipe space (the shipped levels, then FLOPs budget, "
                                      "factorisation, pruning + clustering, precision) with successive "
                                      "halving: the best model on --objective whose validation accuracy drop "
                                      "plus --margin-z standard errors of it is at most --max-drop. "
                                      "Writes every run, the Pareto set (CSV, PNG), best/ and best.yaml; the "
                                      "same command resumes an interrupted search.")
    p.add_argument("--out", required=True, help="search directory (created; an interrupted one is resumed)")
    p.add_argument("--max-drop", type=number, default=SEARCH_DEFAULTS["max_drop"], metavar="POINTS",
                   help="largest validation accuracy drop allowed, in points")
    p.add_argument("--margin-z", type=number, default=SEARCH_DEFAULTS["margin_z"], metavar="Z",
                   help="feasible: drop + Z * paired standard error of the drop <= --max-drop (0: the drop alone)")
    p.add_argument("--objective", choices=SEARCH_OBJECTIVES, default=SEARCH_DEFAULTS["objective"],
                   help="what the chosen model is best at")
    p.add_argument("--time-budget", default=None, metavar="DURATION",
                   help="start no run after this long (90s, 60m, 1.5h) [default: no limit]")
    p.add_argument("--test-data", default=None, metavar="FILE",
                   help="also evaluate the Pareto set on this file (reported, never chosen on)")
    g = p.add_argument_group("space")
    g.add_argument("--levels", type=_levels, default=_shown(SEARCH_SPACE["levels"]), metavar="L,L,...",
                   help="recipes run as written before the grid: level names or YAML files (none: no level)")
    g.add_argument("--budgets", type=_list(float), default=_shown(SEARCH_SPACE["budgets"]), metavar="F,F,...",
                   help="FLOPs fractions of the budget pass (1: none)")
    g.add_argument("--factorise", type=_list(_onoff), default=_shown(SEARCH_SPACE["factorise"]), metavar="off,on",
                   help="factorise the embedding (and drop unused vocabulary rows)")
    g.add_argument("--sparsity", type=_list(float), default=_shown(SEARCH_SPACE["sparsity"]), metavar="S,S,...",
                   help="magnitude pruning sparsity, then 16 clusters (0: neither)")
    g.add_argument("--precisions", type=_list(str), default=_shown(SEARCH_SPACE["precisions"]), metavar="P,P,...",
                   help="float16, dynamic, int8, qat")
    s = p.add_argument_group("schedule")
    s.add_argument("--eta", type=integer, default=SEARCH_DEFAULTS["eta"], help="successive halving: keep 1/eta of a rung")
    s.add_argument("--promote-z", type=number, default=SEARCH_DEFAULTS["promote_z"], metavar="Z",
                   help="after the rung's best, promote first the candidates whose drop - Z * its standard error "
                        "is within --max-drop, by --objective (a short rung over-states the drop; 0: the plain drop)")
    s.add_argument("--rungs", type=integer, default=SEARCH_DEFAULTS["rungs"],
                   help="rungs; the last trains at the recipes' full steps")
    s.add_argument("--reward-gamma", type=number, default=SEARCH_DEFAULTS["reward_gamma"],
                   help="objective reward: quality * (1 + gamma * log2(source FLOPs / FLOPs))")
    s.add_argument("--latency-runs", type=integer, default=SEARCH_DEFAULTS["latency_runs"],
                   help="timed runs per candidate")
    add_column_flags(p, title="data columns (a column not named here: as the model's training run named it)")
    return p


def run(args) -> int:
    from rmcompress.compression.search import Settings, Space, parse_duration

    settings = Settings(max_drop=args.max_drop, objective=args.objective, reward_gamma=args.reward_gamma,
                        eta=args.eta, rungs=args.rungs, latency_runs=args.latency_runs,
                        time_budget=parse_duration(args.time_budget) if args.time_budget else None,
                        margin_z=args.margin_z, promote_z=args.promote_z,
                        space=Space(args.budgets, args.factorise, args.sparsity, args.precisions, args.levels))
    _, data = read_model_data(args)
    test = read_model_data(args, args.test_data)[1] if args.test_data else None
    from rmcompress.compression.search import search

    report = search(args.model, data, args.out, settings, test_data=test,
                    log=lambda m: print(f"rmcompress search: {m}", file=sys.stderr))
    b = report["best"]
    status = "within" if report["feasible"] else "NOT within (none was; the smallest bound)"
    line = (f"best: {b['candidate']} ({status} {settings.max_drop:g} points): drop {b['accuracy_drop_points']:+.2f} "
            f"(bound {b['drop_bound']:+.2f}) "
            f"points, {b.get('size_ratio', float('nan')):.1f}x smaller, {b.get('latency_speedup', float('nan')):.1f}x faster")
    if "test_drop" in b:
        line += f"; test drop {b['test_drop']:+.2f} points"
    print(line)
    print(f"wrote {args.out} (best/, best.yaml, search.csv, pareto.csv, pareto.png, report.json)")
    return 0
