"""Accuracy-aware recipe search: the best model on an objective within a validation accuracy drop.

**Space.** A candidate is one recipe: a recipe of ``Space.levels`` (shipped level names such as
``light``, ``medium``, ``aggressive``, or recipe YAML files) as it is written, named
``level-NAME``, or one of the grid, the product of four choices (:class:`Space`):

- ``budget``: the FLOPs fraction of a ``budget`` pass (gated training + shrink, 1,000 steps, the
  gates started alike and the residual width not gated); 1 = no budget pass. ``aggressive`` and
  ``extreme`` start their gates in the source's magnitude order with the width gated, so with
  them among the levels a search tries both starts: they prefer different structures (on HH pairs
  the start alike keeps one block at full width, which runs faster at 128 tokens than the two
  narrow blocks of the ranked start; docs/benchmarks.md, the search at the drop ``aggressive`` costs);
- ``factorise``: ``on`` drops unused vocabulary rows and factorises the embedding (``max_error`` 0.35);
- ``sparsity``: > 0 magnitude-prunes to that sparsity, then clusters to 16 values (sparsity kept);
- ``precision``: ``float16``, ``dynamic``, ``int8`` (``keep_float_ops: auto``; a layer whose int8
  alone reorders more than 2% of row pairs stays float: ``min_layer_agreement``), ``int4`` (4-bit
  weights; a layer whose 4 bits alone reorder more than 2% of row pairs keeps 8) or ``qat``.

The levels come first in the first rung, so a search whose time budget lets them run never returns
a model slower (on the objective) than a level run that meets the accuracy constraint; a level
without training passes (``light``) runs exactly as shipped, one that trains runs with its steps
scaled like every candidate's. The grid widens the space around them. A grid candidate runs
``[budget] fuse [factorise] [prune cluster] length(buckets) quantise``; every candidate runs
through :func:`rmcompress.compression.pipeline.compress`, so it is checked and measured like any
recipe (parity, validation quality, size, latency ratio against the source's float32 TFLite file
timed interleaved with it in the same process).

**Successive halving** (Jamieson & Talwalkar, 2016): rung ``r`` of ``R`` runs its candidates with
every training pass's ``steps`` (and a budget pass's ``final_steps``) scaled by
``eta ** (r - R + 1)``; ``k = max(1, n // eta)`` of a rung's ``n`` go on to the next rung, the last
at full steps (:func:`promote`). Candidates rank by :func:`rank_key`: those whose drop bound
(below) is within ``max_drop`` points by the objective, then the others by their bound. The first
to go on is the best by that rank (the incumbent); the other ``k - 1`` are the best by
:func:`promise_key`, the same rank with the optimistic bound

    promise = drop - promote_z * se  <=  max_drop,

because a short rung measures the drop of a candidate that trains with an error of its own, and
over-states it more often than not: on SST-2 (878 validation sentences, ``se`` 1.0 to 1.3 points)
half-step drops were -1.0 to +3.3 points from the same candidates' full-step drops, above them in 11
of 16 pairs and by at most 2 ``se`` in 15 (docs/benchmarks.md, the search at the drop ``aggressive``
costs). With ``promote_z`` = 2 (the default) a fast candidate up to 2 ``se`` past ``max_drop`` at
the short rung still gets its full-step run, while the incumbent keeps the search from trading a
candidate that already meets the constraint for faster ones that may not. ``promote_z`` = 0
promotes by the plain drop (by :func:`rank_key` itself when ``margin_z`` is 0 too). A run that
failed goes on to no rung.

**Runs a later rung would repeat.** A pass fine-tunes at most
:data:`~rmcompress.compression.finetune.MAX_EPOCHS_PER_PASS` epochs of the training split (a
``budget`` pass its ``max_epochs``), a cap that does not depend on the steps the recipe asks for, and
every pass that trains reports the ``steps`` it ran beside ``steps_requested``. A promoted candidate
whose short run stopped at that cap in every pass whose steps the next rung raises (a ``budget``
pass with the same share of ``final_steps``) would train the same steps on the same rows from the
same seed: it is not run again (:func:`same_model_at`); its next-rung row is that run's, marked
``same_model_as`` with the run's directory (``seconds`` 0; its figures are that run's, its latency
that file's joint timing), and ``best.yaml`` of it has the full steps, which build the same model
(``best/`` is the run's own directory, its ``recipe.yaml`` with the steps it asked for). A candidate
without training passes (``light``) is the same model at every rung. On a small training set (1,295
HH pairs: 20 steps an epoch) that is every candidate.
Whole compress runs report no intermediate values, which is what library schedulers (optuna's
pruners, keras-tuner's Hyperband) need, so the few lines of the schedule live here.

**Latency timed together.** Each run's ``latency_speedup`` is its file against the source's float32
file timed interleaved in that run's own process, minutes apart from the next run's; on a shared
machine the same file's ratio moved by 15% between two runs (SST-2, ``extreme`` at half steps:
11.0x and 13.0x), more than two fast candidates differ by. With the ``latency`` objective, after each
rung the search times that rung's built files and the source's float32 file (``OUT/source-float32``)
together in 10 interleaved rounds in one process (:func:`rmcompress.evaluation.latency.interleaved_latency`,
each file with its own tokenizer on the first 256 texts of ``data``) and promotes on those ratios;
before the choice it times every built file of every rung together again, and chooses on that. A
row's ``latency_speedup`` (p50 and p90 too) is that joint figure; ``latency_speedup_run`` keeps the
run's own, which is also what ``best/report.json`` holds. Failed runs and runs without a TFLite file
keep their own figures; a rung with one built file is not timed again. Each joint timing is kept in
``OUT/timed-together-r<rung>.json`` / ``-final.json`` and reused while it covers the same files, so
a resumed search promotes and chooses as the interrupted one did.

**Accuracy constraint with a margin.** A validation split of ``n`` rows measures a drop with a
sampling error: a run is *feasible* when its one-sided bound

    bound = drop + margin_z * se  <=  max_drop,

where ``drop`` = ``accuracy_drop_points`` and ``se`` = ``accuracy_drop_se_points``, the paired
standard error of the drop on the validation rows, ``100 * sd(c_src - c) / sqrt(n)`` with ``c`` the
per-row correctness of each model (:func:`rmcompress.metrics.paired_drop_se`). ``margin_z`` = 1
(the default) asks the drop to be within ``max_drop`` with about 84% one-sided confidence under a
normal approximation, 1.645 with 95%, 0 is the plain drop. A model that flips few rows (int8 of the
same weights) has a small ``se``; one retrained to a budget flips more and needs a larger margin,
which is what makes its test drop exceed its validation drop more often.

**Choice.** Every run of every rung is a model built and measured like a recipe's, so the chosen
one is the best of all of them by :func:`rank_key` (on a tie, the run with more steps): a
candidate that meets ``max_drop`` at half steps and drifts past it at full steps is returned at
half steps, and ``best.yaml`` has its steps.

**Data.** ``Settings.data`` is the recipe ``data`` section every candidate runs with (``val_fraction``,
``seed``, ``split``: :func:`rmcompress.compression.state.split_settings`); unset, each run splits
``data`` as the model's training run did. A benchmark that fixed its validation rows apart from the
training seed passes the split that reproduces them.

**Objectives** (from the candidate's ``report.json``; latency from the joint timing above):
``latency`` = ``latency_speedup``
(higher is better), ``size`` = ``size_bytes``, ``flops`` = ``flops`` (lower is better), ``reward`` =
``quality * (1 + reward_gamma * log2(source_flops / flops))``, the structure reward training logs
(:mod:`rmcompress.training.complexity_model`), ``reward_gamma`` settable.

**Shared prefixes.** Candidates of one rung whose recipes start with the same passes (a grid's
``budget`` pass is the same for every factorise/sparsity/precision choice) train them once: the
search plans each rung's runs in a :class:`rmcompress.compression.prefixcache.PrefixCache`, which
keeps the state where their recipes part, and every later run starts from it (its report marks
those passes ``reused``). A restored run gives the weights and figures of the same recipe run from
scratch, so ``best.yaml`` still reproduces the chosen run.

**Cache and resume.** Each run writes ``OUT/candidates/<name>-r<rung>/`` atomically and is reused
when its ``report.json`` exists; the same command after an interruption continues where it
stopped. ``OUT/search.json`` holds the settings; another search into the same ``OUT`` is refused.
**Time budget**: no new run starts after ``time_budget`` seconds; the result is what finished.

**Outputs**: ``search.csv`` (every run; ``reused_passes``: the passes it started after), ``pareto.csv`` and ``pareto.png`` (the non-dominated
runs on drop vs objective), ``best/`` (the chosen run's directory), ``best.yaml`` (the recipe that
reproduces it, at its rung's steps), ``report.json``. With ``test_data`` the Pareto runs'
TFLite files are also evaluated on it (``test_quality``, ``test_drop`` against the source model's
float32 TFLite on the same rows); nothing is chosen on it.
"""
from __future__ import annotations

import itertools
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rmcompress.compression.pipeline import compress
from rmcompress.compression.prefixcache import PrefixCache
from rmcompress.compression.recipe import Recipe
from rmcompress.config.choices import SEARCH_DEFAULTS, SEARCH_OBJECTIVES, SEARCH_PRECISIONS, SEARCH_SPACE
from rmcompress.data.loaders import load_for_model
from rmcompress.errors import RMCompressError, UsageError
from rmcompress.metrics import quality_key
from rmcompress.models.layout import check_model_dir
from rmcompress.ownership import read_manifest
from rmcompress.training.resume import data_fingerprint
from rmcompress.evaluation.artifacts import open_artifact
from rmcompress.evaluation.evaluate import evaluate
from rmcompress.evaluation.latency import interleaved_latency
from rmcompress.export.exporter import export_model
from rmcompress.fileio import atomic_dir, atomic_write_text, read_json, write_json

#: objective -> (report key, direction); the names are :data:`SEARCH_OBJECTIVES`
OBJECTIVES = dict(zip(SEARCH_OBJECTIVES, (("latency_speedup", "max"), ("size_bytes", "min"), ("flops", "min"),
                                          ("reward", "max"))))
PRECISIONS = SEARCH_PRECISIONS
#: rounds of the joint timing (:func:`_time_together`): a round of a 50 kB model is 20 calls of 25 us,
#: shorter than one scheduler time slice, so a busy moment spoils a file's whole round (SST-2 seed 1
#: under load, 3 rounds: ``aggressive``'s full-step file 5.3x, 7.5x in 10 rounds on idle cores); the
#: median of 10 rounds outvotes a few such rounds
TOGETHER_ROUNDS = 10
#: int8 candidates keep float every layer whose int8 alone reorders more than 2% of row pairs
#: (``quantise``'s ``min_layer_agreement``, the int8 rows of ``rmcompress sensitivity``)
MIN_LAYER_AGREEMENT = 0.98


@dataclass(frozen=True)
class Space:
    """The choices a candidate combines (module docstring)."""

    budgets: tuple = SEARCH_SPACE["budgets"]
    factorise: tuple = SEARCH_SPACE["factorise"]
    sparsity: tuple = SEARCH_SPACE["sparsity"]
    precisions: tuple = SEARCH_SPACE["precisions"]
    #: recipes run as they are written (level names or YAML paths), before the grid
    levels: tuple = SEARCH_SPACE["levels"]

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(str(v) for v in self.levels))
        for v in self.levels:
            try:
                Recipe.resolve(v)
            except RMCompressError as e:
                raise UsageError(f"search: level {v!r}: {str(e).splitlines()[0]}") from None
        for f in self.factorise:
            if not isinstance(f, bool):
                raise UsageError(f"search: factorise {f!r} must be on/off (True/False)")
        for b in self.budgets:
            if not 0 < b <= 1:
                raise UsageError(f"search: budget {b} must be a FLOPs fraction in (0, 1]")
        for s in self.sparsity:
            if not 0 <= s < 1:
                raise UsageError(f"search: sparsity {s} must be in [0, 1)")
        for p in self.precisions:
            if p not in PRECISIONS:
                raise UsageError(f"search: precision {p!r} unknown; allowed: {', '.join(PRECISIONS)}")
        if not (self.budgets and self.factorise and self.sparsity and self.precisions):
            raise UsageError("search: every choice of the space needs at least one value")
        names = [c.name for c in self.candidates()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # one name is one run directory
            raise UsageError(f"search: two candidates would be named {twice[0]!r}; give the level recipes "
                             "different file names")

    def candidates(self) -> list:
        """The levels (:class:`LevelCandidate`), then the grid (:class:`Candidate`)."""
        return [*(LevelCandidate(v) for v in self.levels),
                *(Candidate(*c) for c in itertools.product(self.budgets, self.factorise, self.sparsity,
                                                            self.precisions))]


def _scale_steps(params: dict, step_scale: float) -> dict:
    """``params`` with ``steps`` and a positive ``final_steps`` times ``step_scale`` (at least 1)."""
    out = dict(params)
    for k in ("steps", "final_steps"):
        if isinstance(out.get(k), int) and out[k] > 0:
            out[k] = max(1, int(round(out[k] * step_scale)))
    return out


@dataclass(frozen=True)
class LevelCandidate:
    """A recipe of the space's ``levels`` (a level name or a YAML path), run as it is written."""

    source: str

    @property
    def name(self) -> str:
        return f"level-{Path(self.source).stem if self.source.endswith(('.yaml', '.yml')) else self.source}"

    def recipe(self, step_scale: float = 1.0, data: dict | None = None) -> dict:
        """The level's recipe, every training pass's ``steps`` times ``step_scale``, with ``data``
        as its ``data`` section when given (else the recipe's own)."""
        r = Recipe.resolve(self.source).to_dict()
        passes = [{name: _scale_steps(params, step_scale)} for p in r["passes"] for name, params in p.items()]
        recipe = {"name": f"search-{self.name}", "description": r["description"] or "", "passes": passes,
                  "export": r["export"]}
        own = {k: v for k, v in (r["data"] or {}).items() if v is not None}
        if data or own:
            recipe["data"] = dict(data) if data else own
        return recipe


@dataclass(frozen=True)
class Candidate:
    budget: float
    factorise: bool
    sparsity: float
    precision: str

    @property
    def name(self) -> str:
        return (f"b{self.budget:g}-{'f' if self.factorise else 'nof'}-s{self.sparsity:g}-{self.precision}")

    def recipe(self, step_scale: float = 1.0, data: dict | None = None) -> dict:
        """The recipe dict, every training pass's ``steps`` times ``step_scale`` (at least 1), with
        ``data`` as its ``data`` section when given."""
        def steps(n: int) -> int:
            return max(1, int(round(n * step_scale)))

        passes: list = []
        if self.budget < 1:
            passes.append({"budget": {"flops_fraction": self.budget, "steps": steps(1000), "width": False,
                                      "gate_init": "uniform"}})  # the other start than the levels' (docstring)
        passes.append("fuse")
        if self.factorise:
            passes.append({"factorise": {"vocab_prune": True, "max_error": 0.35, "steps": steps(200)}})
        if self.sparsity > 0:
            passes.append({"prune": {"sparsity": self.sparsity, "schedule": "polynomial", "steps": steps(300)}})
            passes.append({"cluster": {"clusters": 16, "steps": steps(200)}})
        passes.append({"length": {"mode": "buckets"}})
        q = {"mode": self.precision}
        if self.precision == "int8":
            q.update(keep_float_ops="auto", max_layer_error=1.5, min_layer_agreement=MIN_LAYER_AGREEMENT)
        elif self.precision == "int4":
            q["min_layer_agreement"] = MIN_LAYER_AGREEMENT
        elif self.precision == "qat":
            q["steps"] = steps(300)
        passes.append({"quantise": q})
        recipe = {"name": f"search-{self.name}", "description": f"found by rmcompress search ({self.name})",
                  "passes": passes}
        if data:
            recipe["data"] = dict(data)
        return recipe


@dataclass
class Settings:
    max_drop: float = SEARCH_DEFAULTS["max_drop"]
    objective: str = SEARCH_DEFAULTS["objective"]
    reward_gamma: float = SEARCH_DEFAULTS["reward_gamma"]
    eta: int = SEARCH_DEFAULTS["eta"]
    rungs: int = SEARCH_DEFAULTS["rungs"]
    time_budget: float | None = None
    latency_runs: int = SEARCH_DEFAULTS["latency_runs"]
    space: Space = field(default_factory=Space)
    #: the recipe ``data`` section of every candidate (module docstring); None: the model's split
    data: dict | None = None
    #: feasible: drop + margin_z * se <= max_drop (module docstring)
    margin_z: float = SEARCH_DEFAULTS["margin_z"]
    #: promising at a short rung: drop - promote_z * se <= max_drop (module docstring)
    promote_z: float = SEARCH_DEFAULTS["promote_z"]

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise UsageError(f"search: objective {self.objective!r} unknown; allowed: {', '.join(OBJECTIVES)}")
        if self.max_drop < 0:
            raise UsageError(f"search: max_drop {self.max_drop} must be >= 0 (accuracy points)")
        if not isinstance(self.eta, int) or not isinstance(self.rungs, int):
            raise UsageError(f"search: eta {self.eta!r} and rungs {self.rungs!r} must be integers")
        for name in ("margin_z", "promote_z"):
            z = getattr(self, name)
            if not (isinstance(z, (int, float)) and 0 <= z < 10):
                raise UsageError(f"search: {name} {z!r} must be a number in [0, 10) (standard errors)")
        if self.reward_gamma < 0:
            raise UsageError(f"search: reward_gamma {self.reward_gamma} must be >= 0")
        if self.eta < 2 or self.rungs < 1:
            raise UsageError(f"search: eta {self.eta} must be >= 2 and rungs {self.rungs} >= 1")
        if self.latency_runs < 1 and self.objective == "latency":
            raise UsageError("search: the latency objective needs latency_runs >= 1")
        if self.data:
            Recipe.from_dict({"name": "search", "passes": ["fuse"], "data": dict(self.data)}, "search: data")

    def identity(self) -> dict:
        """What makes two searches the same (the time budget may change between resumes)."""
        d = asdict(self)
        d.pop("time_budget")
        d["recipe_data"] = d.pop("data")  # "data" of a search's identity is its rows' fingerprint
        d["space"] = {k: list(v) for k, v in d["space"].items()}
        return d


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``60m``, ``1.5h`` or a plain number of seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise UsageError(f"--time-budget {text!r}: expected a duration like 90s, 60m or 1.5h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def objective_value(row: dict, settings: Settings) -> float:
    """The candidate's objective (module docstring); ``nan`` when its run did not measure it."""
    if settings.objective == "reward":
        q = row.get("accuracy", row.get("pairwise_accuracy"))
        if q is None or not row.get("flops") or not row.get("source_flops"):
            return math.nan
        return float(q) * (1 + settings.reward_gamma * math.log2(row["source_flops"] / row["flops"]))
    v = row.get(OBJECTIVES[settings.objective][0])
    return math.nan if v is None else float(v)


def _drop(row: dict) -> float:
    """The run's accuracy drop in points; infinite for a run that failed or measured none."""
    d = row.get("accuracy_drop_points")
    return math.inf if d is None or (isinstance(d, float) and math.isnan(d)) else float(d)


def _se(row: dict) -> float:
    se = row.get("accuracy_drop_se_points")
    return 0.0 if se is None or (isinstance(se, float) and math.isnan(se)) else float(se)


def drop_bound(row: dict, settings: Settings, z: float | None = None) -> float:
    """``drop + z * se`` in points, ``z`` = ``margin_z`` unless given (module docstring); a run without
    ``accuracy_drop_se_points`` counts its error as 0; a failed run's bound is infinite."""
    return _drop(row) + (settings.margin_z if z is None else z) * _se(row)


def rank_key(row: dict, settings: Settings, z: float | None = None) -> tuple:
    """Sort key, best first: bound (``drop + z * se``, ``z`` = ``margin_z`` unless given) within
    ``max_drop`` before outside; then the objective and, on a tie, the bound (within), or the bound
    (outside). A failed run's bound is infinite."""
    bound = drop_bound(row, settings, z)
    value = objective_value(row, settings)
    sign = -1 if OBJECTIVES[settings.objective][1] == "max" else 1
    if bound <= settings.max_drop and not math.isnan(value):
        return (0, sign * value, bound)
    return (1, bound, 0.0)


def promise_key(row: dict, settings: Settings) -> tuple:
    """:func:`rank_key` with the optimistic bound ``drop - promote_z * se`` (module docstring)."""
    return rank_key(row, settings, -settings.promote_z)


def promote(results: list, settings: Settings) -> list:
    """The candidates of ``results`` (``(candidate, row)`` pairs of one rung) that go on to the next
    rung: up to ``max(1, n // eta)`` of them, the best by :func:`rank_key` first, then the best of the
    rest by :func:`promise_key` (module docstring); failed runs never."""
    k = max(1, len(results) // settings.eta)
    built = [cr for cr in results if math.isfinite(_drop(cr[1]))]  # a failed run goes no further
    if not built:
        return []
    first = min(built, key=lambda cr: rank_key(cr[1], settings))
    rest = sorted((cr for cr in built if cr is not first), key=lambda cr: promise_key(cr[1], settings))
    return [c for c, _ in [first, *rest[:k - 1]]]


def _passes(recipe: dict) -> list[tuple[str, dict]]:
    return [(p, {}) if isinstance(p, str) else next(iter(p.items())) for p in recipe["passes"]]


def same_model_at(recipe: dict, later: dict, report: dict) -> bool:
    """Whether ``later`` (``recipe`` at a later rung's steps) builds the model of ``report`` (the run of
    ``recipe``) again (module docstring): the two differ in ``steps`` / ``final_steps`` only, and every
    pass whose steps differ ran fewer steps than ``recipe`` asked (its note's ``steps`` <
    ``steps_requested``); a ``budget`` pass also keeps the ratio ``final_steps : steps`` (its cap cuts
    both in proportion). A pass that does not report both figures is taken to train more."""
    a, b = _passes(recipe), _passes(later)
    if [n for n, _ in a] != [n for n, _ in b]:
        return False
    notes = [n for n in report.get("passes") or [] if isinstance(n, dict)]
    seen: dict = {}
    for (name, pa), (_, pb) in zip(a, b):
        k = seen[name] = seen.get(name, -1) + 1
        if pa == pb:
            continue
        if {key for key in {*pa, *pb} if pa.get(key) != pb.get(key)} - {"steps", "final_steps"} \
                or pb.get("steps", 0) < pa.get("steps", 0):
            return False
        mine = [n for n in notes if n.get("pass") == name]
        note = mine[k] if k < len(mine) else {}
        asked, ran = note.get("steps_requested"), note.get("steps")
        if not (isinstance(asked, int) and isinstance(ran, int) and asked == pa.get("steps") and ran < asked):
            return False
        fa, fb = pa.get("final_steps", 0) or 0, pb.get("final_steps", 0) or 0
        if fa * pb.get("steps", 0) != fb * pa.get("steps", 0):
            return False
    return True


def pareto(df: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Rows no other row beats on both drop (lower) and objective (its direction)."""
    sign = -1 if OBJECTIVES[settings.objective][1] == "max" else 1
    pts = np.stack([df["accuracy_drop_points"].to_numpy(float), sign * df["objective"].to_numpy(float)], 1)
    keep = [not any((pts[j] <= pts[i]).all() and (pts[j] < pts[i]).any() for j in range(len(pts)) if j != i)
            for i in range(len(pts))]
    return df[np.asarray(keep, bool)]


def _identity(settings: Settings, model, data) -> dict:
    """What a resumed search must share with the one in ``OUT``: the settings, the model (its path
    and the signature of its manifest) and the data (its rows' fingerprint)."""
    manifest, _ = read_manifest(model)
    return {**settings.identity(), "model": str(Path(model).resolve()),
            "model_signature": (manifest or {}).get("signature"), "data": data_fingerprint(data)}


def _open_out(out: Path, identity: dict) -> None:
    """Create ``out`` for this search, or check that it holds this search (to resume it)."""
    marker = out / "search.json"
    if out.exists() and not marker.is_file():
        raise UsageError(f"{out}: exists and holds no rmcompress search (search.json); give a new --out")
    if marker.is_file():
        before = read_json(marker)
        diff = [k for k in identity if before.get(k) != identity[k]]
        if diff:
            raise UsageError(f"{out}: holds a search with another {', '.join(diff)}; give a new --out "
                             "or the same model, data and settings to resume it")
        return
    out.mkdir(parents=True)
    write_json(marker, identity)


def _run_paths(out: Path, c, rung: int) -> tuple[Path, Path]:
    """A run's directory and the file that records its failure."""
    run_dir = out / "candidates" / f"{c.name}-r{rung}"
    return run_dir, run_dir.with_name(run_dir.name + ".failed.json")


def _recorded(run_dir: Path, failure: Path) -> Path | None:
    """The report or failure record of a run that has ended, None for one still to run."""
    return next((f for f in (run_dir / "report.json", failure) if f.is_file()), None)


def _reused(report: dict) -> list[str]:
    """The passes a run started after (restored from an earlier run's state)."""
    return [p["pass"] for p in report.get("passes", []) if p.get("reused")]


def search(model, data, out, settings: Settings | None = None, test_data=None, log=None) -> dict:
    """Run the search (module docstring) of ``model`` (a model directory) on ``data``; write ``out``;
    return the report (``best``: the chosen run's row, ``runs``: how many, ``pareto``: the set)."""
    settings = settings or Settings()
    log = log or (lambda msg: None)
    out = Path(out)
    metadata = check_model_dir(model)
    task, loss = metadata.get("task", "pointwise"), metadata.get("loss") or "bce"
    if quality_key(task, loss) == "mae":
        raise UsageError(f"search: {model} is a {loss} regression model; the accuracy drop the search bounds "
                         "needs a bce or pairwise model")
    data = load_for_model(data, metadata, training_columns=True)
    if test_data is not None:
        test_data = load_for_model(test_data, metadata, training_columns=True)
    _open_out(out, _identity(settings, model, data))
    t0 = time.time()
    cache = PrefixCache()
    cands = settings.space.candidates()
    rows: list[dict] = []
    stopped = False
    earlier: dict = {}  # candidate name -> (its recipe dict, run directory, report) at the rung before
    for rung in range(settings.rungs):
        scale = float(settings.eta) ** (rung - settings.rungs + 1)
        results = []
        asked = {c.name: c.recipe(scale, settings.data) for c in cands}
        recipes = {name: Recipe.resolve(r) for name, r in asked.items()}
        same = {c.name: earlier[c.name][1] for c in cands if c.name in earlier
                and _recorded(*_run_paths(out, c, rung)) is None
                and same_model_at(earlier[c.name][0], asked[c.name], earlier[c.name][2])}
        cache.plan([recipes[c.name] for c in cands
                    if _recorded(*_run_paths(out, c, rung)) is None and c.name not in same])
        for c in cands:
            run_dir, failure = _run_paths(out, c, rung)
            recorded = _recorded(run_dir, failure)
            if recorded is not None:  # cached: its report, or the record of its failure
                report = read_json(recorded)
            elif c.name in same:  # the run before stopped at every cap: this rung's run is that model
                run_dir = same[c.name]
                report = read_json(run_dir / "report.json")
                log(f"{c.name}: steps x{scale:.3g} build the model of {run_dir.name} (no pass that trains asks "
                    "for more steps than it ran there), not run again")
            elif settings.time_budget is not None and time.time() - t0 >= settings.time_budget:
                stopped = True
                continue
            else:
                log(f"rung {rung + 1}/{settings.rungs} (steps x{scale:.3g}): {c.name}")
                try:
                    report = compress(model, c.recipe(scale, settings.data), data, run_dir,
                                      latency_runs=settings.latency_runs, cache=cache)
                    if _reused(report):
                        log(f"{c.name}: started from the state after {', '.join(_reused(report))} of an earlier run")
                except RMCompressError as e:  # a candidate that cannot be built is a result, not the end
                    report = {"error": str(e).splitlines()[0][:300], "accuracy_drop_points": math.inf}
                    write_json(failure, report)
                    log(f"{c.name}: failed: {report['error']}")
                finally:
                    cache.release(recipes[c.name])
            row = {"candidate": c.name, "rung": rung, "step_scale": scale, "dir": str(run_dir),
                   **{k: v for k, v in report.items() if not isinstance(v, (dict, list))}}
            row["reused_passes"] = ",".join(_reused(report))
            row["same_model_as"] = same[c.name].name if c.name in same else ""
            if c.name in same:  # nothing ran; its figures are the earlier run's
                row["seconds"] = 0.0
            row["objective"] = objective_value(row, settings)
            row["accuracy_drop_points"] = _drop(row)
            row["drop_bound"] = drop_bound(row, settings)
            results.append((c, row))
            if "error" not in report and c.name not in same:  # a run not repeated keeps its own recipe
                earlier[c.name] = (asked[c.name], run_dir, report)
        cache.clear()
        rows += [r for _, r in results]
        if not results:
            break
        if rung < settings.rungs - 1:
            _time_together([r for _, r in results], model, data, out, settings, log, f"r{rung}")
            cands = promote(results, settings)
    _time_together(rows, model, data, out, settings, log, "final")
    final = pd.DataFrame([r for r in rows if r["rung"] == max(r["rung"] for r in rows)]) if rows else pd.DataFrame()
    table = pd.DataFrame(rows)
    if not len(final):
        raise UsageError(f"search: no candidate finished within the time budget ({settings.time_budget:g} s)")
    table = table.assign(feasible=table["drop_bound"] <= settings.max_drop)
    built = table[np.isfinite(table["accuracy_drop_points"].astype(float))]
    if not len(built):
        raise UsageError(f"search: every candidate failed (see {out / 'search.csv'}, column error)")
    # every built model once (a run not repeated: as its latest rung's row); on a tie the run with more steps
    built = built.sort_values("rung", kind="stable").drop_duplicates("dir", keep="last")
    best = min(built.to_dict(orient="records"), key=lambda r: (*rank_key(r, settings), -r["rung"]))
    front = pareto(built, settings)
    if test_data is not None:
        front = _with_test(front, model, test_data, out)
        best = front[front["dir"] == best["dir"]].to_dict(orient="records")[0] \
            if best["dir"] in set(front["dir"]) else best
    atomic_write_text(out / "search.csv", table.to_csv(index=False))
    atomic_write_text(out / "pareto.csv", front.to_csv(index=False))
    _plot(built, front, best, settings, out / "pareto.png")
    best_c = next(c for c in settings.space.candidates() if c.name == best["candidate"])
    with atomic_dir(out / "best", overwrite=True) as tmp:
        shutil.copytree(best["dir"], tmp, dirs_exist_ok=True)
    atomic_write_text(out / "best.yaml", _yaml(best_c.recipe(best["step_scale"], data=settings.data)))
    report = {"stage": "search", "objective": settings.objective, "max_drop": settings.max_drop,
              "margin_z": settings.margin_z, "promote_z": settings.promote_z,
              "best": best, "feasible": bool(best["drop_bound"] <= settings.max_drop),
              "runs": len(table), "final_rung_runs": len(final),
              "runs_not_repeated": int((table["same_model_as"] != "").sum()), "pareto": front.to_dict(orient="records"),
              "stopped_by_time_budget": stopped, "seconds": round(time.time() - t0, 1)}
    write_json(out / "report.json", report)
    return report


def _source_tflite(model, out: Path) -> Path:
    """The source model's float32 TFLite file, exported once to ``OUT/source-float32``."""
    src_dir = out / "source-float32"
    if not (src_dir / "model.tflite").is_file():
        export_model(model, src_dir, formats=("tflite",), latency_runs=0, overwrite=True)
    return src_dir / "model.tflite"


def _time_together(rows: list, model, data, out: Path, settings: Settings, log, tag: str) -> None:
    """With the ``latency`` objective: the built files of ``rows`` and the source's float32 file timed
    in one process (module docstring); each row's ``latency_speedup``, ``latency_ms_p50``,
    ``latency_ms_p90``, ``source_latency_ms_p50`` and ``objective`` set from it (the run's own ratio
    kept as ``latency_speedup_run``). The timing is recorded in ``OUT/timed-together-TAG.json`` and
    reused while it holds the same files, so a resumed search promotes and chooses as it did."""
    if settings.objective != "latency":
        return
    built = [r for r in rows if math.isfinite(_drop(r)) and (Path(r["dir"]) / "model.tflite").is_file()]
    dirs = list(dict.fromkeys(r["dir"] for r in built))
    if len(dirs) < 2:  # one file: nothing to compare it with but its own run's figure
        return
    record = out / f"timed-together-{tag}.json"
    timed = read_json(record) if record.is_file() else None
    if timed is None or timed.get("dirs") != dirs:
        files = [_source_tflite(model, out), *(Path(d) / "model.tflite" for d in dirs)]
        texts = data.all_texts[:256]
        ids = [np.asarray(open_artifact(f).tokenizer.encode(texts), np.int32) for f in files]
        t = interleaved_latency(files, ids, runs=settings.latency_runs, rounds=TOGETHER_ROUNDS)
        timed = {"dirs": dirs, "rounds": TOGETHER_ROUNDS, "source": t[0], "files": t[1:]}
        write_json(record, timed)
    src = timed["source"]["latency_ms_p50"]
    by_dir = dict(zip(dirs, timed["files"]))
    for r in built:
        t = by_dir[r["dir"]]
        r.setdefault("latency_speedup_run", r.get("latency_speedup"))
        r.update(latency_ms_p50=t["latency_ms_p50"], latency_ms_p90=t["latency_ms_p90"], source_latency_ms_p50=src,
                 latency_speedup=src / t["latency_ms_p50"])
        r["objective"] = objective_value(r, settings)
    log(f"timed {len(dirs)} files with the source's together: " + ", ".join(
        f"{Path(d).name} {src / by_dir[d]['latency_ms_p50']:.2f}x" for d in dirs))


def _with_test(front: pd.DataFrame, model, test_data, out: Path) -> pd.DataFrame:
    """``test_quality`` of each run's TFLite file on ``test_data`` and ``test_drop`` (points) against
    the source model's float32 TFLite (exported once to ``OUT/source-float32``) on the same rows."""
    src_dir = _source_tflite(model, out).parent
    key = "pairwise_accuracy" if test_data.task == "pairwise" else "accuracy"
    base = evaluate(src_dir / "model.tflite", test_data, latency_runs=0)[key]
    q = [evaluate(Path(d) / "model.tflite", test_data, latency_runs=0)[key] for d in front["dir"]]
    return front.assign(test_quality=q, test_drop=[100.0 * (base - v) for v in q])


def _yaml(recipe: dict) -> str:
    Recipe.resolve(recipe)  # the file must load as a recipe
    return yaml.safe_dump(recipe, sort_keys=False)


def _plot(final: pd.DataFrame, front: pd.DataFrame, best: dict, settings: Settings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col, direction = OBJECTIVES[settings.objective]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(final["accuracy_drop_points"], final["objective"], color="0.6", label="every run")
    f = front.sort_values("accuracy_drop_points")
    ax.plot(f["accuracy_drop_points"], f["objective"], "o-", color="tab:blue", label="Pareto set")
    ax.scatter([best["accuracy_drop_points"]], [best["objective"]], s=120, facecolors="none",
               edgecolors="tab:red", linewidths=2, label=f"chosen: {best['candidate']} r{int(best['rung'])}")
    ax.axvline(settings.max_drop, color="tab:red", linestyle="--", linewidth=1)
    for _, r in f.iterrows():
        ax.annotate(f"{r['candidate']} r{int(r['rung'])}", (r["accuracy_drop_points"], r["objective"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    unit = {"latency": "x faster than float32", "size": "bytes", "flops": "FLOPs per example",
            "reward": "quality x discount"}[settings.objective]
    ax.set_xlabel("validation accuracy drop (points)")
    ax.set_ylabel(f"{settings.objective} ({unit}; {'higher' if direction == 'max' else 'lower'} is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["search", "Settings", "Space", "Candidate", "LevelCandidate", "parse_duration", "objective_value",
           "drop_bound", "rank_key", "promise_key", "promote", "pareto", "OBJECTIVES", "PRECISIONS"]
