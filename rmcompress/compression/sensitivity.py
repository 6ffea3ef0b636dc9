"""Sensitivity: the validation drop when only one layer is int8 (or 4-bit), or only one group is pruned.

One row per thing compressed *alone*, everything else left as it is:

- ``int8 <layer>``: the model is calibrated once on training rows (as the ``quantise`` pass does);
  the TFLite file quantises the tensors of that Keras layer to int8 and keeps every other tensor in
  float (the TFLite quantiser's ``denylisted_nodes``). Compared with the float TFLite file. The
  ``int8 (all layers)`` row is the full int8 file. ``rmse/scale`` is the quantisation debugger's
  worst error of the layer's tensors (0.29 = rounding noise alone).
- ``int4 <layer>``: the dynamic-range file (int8 weights, float activations) with only that layer's
  weights in 4 bits (:mod:`rmcompress.runtime.int4`), compared with the dynamic-range file, so the
  row is what 4 bits cost on top of 8; ``int4 (all layers)`` has every such weight in 4 bits. The
  per-layer files are those ``quantise: {mode: int4, min_layer_agreement}`` checks
  (:func:`rmcompress.compression.quantise.int4_layers`).
- ``prune50 <group>``: the half of the group's units with the smallest weights (magnitude scores,
  :func:`rmcompress.structured.magnitude.unit_scores`) removed through the gated copy, every other
  gate open. Compared with the dense Keras model. ``flops`` is the model's FLOPs fraction left.

For each row: ``quality`` (the task's headline metric on the validation split, :func:`quality_key`),
``drop = reference - quality`` in points (x100) for accuracies, in label units for ``mae``
(``quality - reference``), so that a positive drop is always worse; and ``agreement``: the share of
validation decisions (pointwise: the reward's sign; pairwise: the pair's order) equal to the
reference's (:func:`rmcompress.export.parity.parity_metrics`). Rows are sorted by drop, worst first.

The validation split is the one ``compress`` uses (the model's training split, :mod:`state`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rmcompress.compression.quantise import (calibrate, int4_layers, layer_errors, layer_tensors, only_int8,
                                             quantize_calibrated)
from rmcompress.compression.state import CompressState, prepare_state
from rmcompress.config.choices import SENSITIVITY_DEFAULTS
from rmcompress.errors import ModelError
from rmcompress.export.parity import parity_metrics
from rmcompress.fileio import atomic_write_text, write_json
from rmcompress.layers.gates import gate_layers
from rmcompress.metrics import quality_key, quality_metrics
from rmcompress.models.modeldir import RewardModelBundle, load_model_dir
from rmcompress.models.structure import gated_cost, structure_of
from rmcompress.runtime.int4 import to_int4
from rmcompress.runtime.tflite import TFLiteRunner, convert
from rmcompress.structured.gating import gated_copy
from rmcompress.structured.magnitude import unit_scores

COLUMNS = ["kind", "target", "units", "quality", "drop", "agreement", "rmse/scale", "flops"]
#: a gate's log alpha that is deterministically open / closed
OPEN, CLOSED = 100.0, -100.0


@dataclass
class Scorer:
    """The validation rows (pairwise: chosen rows then rejected rows), their labels, and quality."""

    state: CompressState
    ids: np.ndarray
    labels: np.ndarray | None

    @classmethod
    def of(cls, state: CompressState, max_examples: int | None = None) -> "Scorer":
        m = len(state.val) if max_examples is None else min(max_examples, len(state.val))
        if state.task == "pairwise":
            return cls(state, np.concatenate([state.val.chosen[:m], state.val.rejected[:m]]), None)
        return cls(state, state.val.ids[:m], state.val.labels[:m])

    @property
    def key(self) -> str:
        return quality_key(self.state.task, self.state.loss)

    def quality(self, rewards) -> float:
        r = np.asarray(rewards, np.float64).reshape(-1)
        if self.state.task == "pairwise":
            n = len(r) // 2
            return quality_metrics("pairwise", (r[:n], r[n:]))[self.key]
        return quality_metrics("pointwise", r, self.labels, self.state.loss)[self.key]

    def row(self, kind: str, target: str, rewards, reference, **extra) -> dict:
        q, ref_q = self.quality(rewards), self.quality(reference)
        drop = (ref_q - q) * 100 if self.key != "mae" else q - ref_q
        agree = parity_metrics(reference, rewards, pairs=self.state.task == "pairwise")["parity_decision_agreement"]
        return {"kind": kind, "target": target, "quality": q, "drop": drop, "agreement": agree, **extra}


def int8_rows(scorer: Scorer, calibration_ids: np.ndarray) -> list[dict]:
    """One row per layer with quantised tensors (:func:`layer_tensors`; the op writing the output is
    ``(model output)``), plus the full int8 file (module docstring)."""
    model = scorer.state.model
    reference = TFLiteRunner(convert(model)).score(scorer.ids)
    calibrated = calibrate(model, calibration_ids)
    errors = layer_errors(model, calibration_ids, scorer.ids[:64])
    worst = errors.set_index("tensor_name")["rmse/scale"]
    by_layer = layer_tensors(model, errors)
    tensors = [t for ts in by_layer.values() for t in ts]
    full = TFLiteRunner(quantize_calibrated(calibrated)).score(scorer.ids)
    rows = [scorer.row("int8", "(all layers)", full, reference, units=len(tensors),
                       **{"rmse/scale": float(errors["rmse/scale"].max())})]
    for layer, own in by_layer.items():
        flat = only_int8(calibrated, tensors, own)
        rows.append(scorer.row("int8", layer, TFLiteRunner(flat).score(scorer.ids), reference, units=len(own),
                               **{"rmse/scale": float(worst.loc[own].max())}))
    return rows


def int4_rows(scorer: Scorer) -> list[dict]:
    """One row per layer with weights that can hold 4 bits (:func:`int4_layers`), plus the file with
    all of them in 4 bits, each against the dynamic-range file (module docstring); none when the
    model has no such weight."""
    model = scorer.state.model
    dynamic, float32 = convert(model, "dynamic"), convert(model)
    by_layer = int4_layers(model, dynamic)
    if not by_layer:
        return []
    reference = TFLiteRunner(dynamic).score(scorer.ids)
    every = [t for ts in by_layer.values() for t in ts]
    rows = [scorer.row("int4", "(all layers)", TFLiteRunner(to_int4(dynamic, float32, every)).score(scorer.ids),
                       reference, units=len(every))]
    for layer, own in by_layer.items():
        rows.append(scorer.row("int4", layer, TFLiteRunner(to_int4(dynamic, float32, own)).score(scorer.ids),
                               reference, units=len(own)))
    return rows


def prune_rows(scorer: Scorer, fraction: float = 0.5) -> list[dict]:
    """One row per prunable group of more than one unit: its ``fraction`` lowest-magnitude units
    removed, every other unit kept (module docstring)."""
    model = scorer.state.model
    reference = model.predict(scorer.ids, batch_size=256, verbose=0).reshape(-1)
    structure = structure_of(model)
    scores = unit_scores(model, structure)
    gated = gated_copy(model)
    gates = gate_layers(gated)
    dense_flops = gated_cost(gated, "full").flops
    rows = []
    for group, s in scores.items():
        n = len(s)
        if group not in gates or n < 2:
            continue
        drop = min(n - 1, math.floor(n * fraction))
        for gate in gates.values():
            gate.log_alpha.assign(np.full(gate.units, OPEN, np.float32))
        alpha = np.full(n, OPEN, np.float32)
        alpha[np.argsort(s, kind="stable")[:drop]] = CLOSED
        gates[group].log_alpha.assign(alpha)
        rewards = gated.predict(scorer.ids, batch_size=256, verbose=0).reshape(-1)
        rows.append(scorer.row(f"prune{round(fraction * 100)}", group, rewards, reference, units=f"{n}->{n - drop}",
                               flops=gated_cost(gated, "deterministic").flops / dense_flops))
    return rows


def sensitivity(model, data, max_examples: int | None = SENSITIVITY_DEFAULTS["max_examples"],
                calibration_samples: int = SENSITIVITY_DEFAULTS["calibration_samples"],
                int8: bool = True, prune: bool = True, int4: bool = True) -> pd.DataFrame:
    """The sensitivity table (module docstring) of ``model`` (a model directory or a loaded
    :class:`RewardModelBundle`) on the validation split of ``data`` (a path or loaded data of the
    model's task, split as the model's training split it); ``int8``/``int4``/``prune``: which rows."""
    bundle = model if isinstance(model, RewardModelBundle) else load_model_dir(model)
    return sensitivity_table(prepare_state(bundle, data), max_examples, calibration_samples, int8, prune, int4)


def sensitivity_table(state: CompressState, max_examples: int | None = SENSITIVITY_DEFAULTS["max_examples"],
                      calibration_samples: int = SENSITIVITY_DEFAULTS["calibration_samples"],
                      int8: bool = True, prune: bool = True, int4: bool = True) -> pd.DataFrame:
    """The sensitivity table of ``state``'s model on its validation split (module docstring);
    ``attrs``: ``metric``, ``reference`` (the float Keras model's quality), ``n_examples``."""
    if len(state.val) == 0:
        raise ModelError("sensitivity needs validation rows")
    scorer = Scorer.of(state, max_examples)
    rows = []
    if int8:
        rows += int8_rows(scorer, state.calibration_ids(calibration_samples))
    if int4:
        rows += int4_rows(scorer)
    if prune:
        rows += prune_rows(scorer)
    if not rows:
        raise ModelError("sensitivity: nothing to measure: the model has "
                         + ("no prunable group of more than one unit" if prune and not (int8 or int4)
                            else "no quantisable layer"))
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df.insert(3, "metric", scorer.key)
    df = df.sort_values("drop", ascending=False, kind="stable").reset_index(drop=True)
    float_rewards = state.model.predict(scorer.ids, batch_size=256, verbose=0)
    df.attrs = {"metric": scorer.key, "reference": scorer.quality(float_rewards),
                "n_examples": len(scorer.labels) if scorer.labels is not None else len(scorer.ids) // 2}
    return df


def plot(df: pd.DataFrame, path) -> None:
    """A horizontal bar chart of ``drop`` per row, one panel per kind, worst at the top; every bar
    labelled with its drop and agreement; one x range for all panels (at least one unit wide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(df["kind"]))
    heights = [0.3 * int((df["kind"] == k).sum()) + 1.0 for k in kinds]
    fig, axes = plt.subplots(len(kinds), 1, figsize=(8, sum(heights) + 0.3), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    metric = df["metric"].iloc[0]
    unit = "points" if metric != "mae" else "mae increase"
    lo, hi = min(0.0, float(df["drop"].min())), max(1.0, float(df["drop"].max()))
    pad = 0.35 * (hi - lo)
    for ax, kind in zip(axes[:, 0], kinds):
        part = df[df["kind"] == kind].iloc[::-1]
        colors = ["tab:red" if d > 0 else "tab:green" for d in part["drop"]]
        ax.barh(part["target"].astype(str), part["drop"], color=colors)
        for y, (d, a) in enumerate(zip(part["drop"], part["agreement"])):
            ax.text(max(d, 0) + 0.01 * (hi - lo), y, f"{d:+.2f}  (agrees {a:.0%})", va="center", fontsize=7)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlim(lo - 0.05 * (hi - lo), hi + pad)
        ax.set_title(f"{kind}: validation drop when only this is compressed"
                     + (" (against the int8-weight file)" if kind == "int4" else ""), fontsize=10)
        ax.set_xlabel(f"drop of {metric} ({unit}; > 0 is worse)", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def text_table(df: pd.DataFrame) -> str:
    """The table as text: figures rounded, empty cells blank."""
    shown = df.copy()
    for c, digits in (("quality", 4), ("drop", 2), ("agreement", 3), ("rmse/scale", 2), ("flops", 3)):
        shown[c] = shown[c].map(lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}f}")
    return shown.fillna("").to_string(index=False)


def write(df: pd.DataFrame, out_dir, meta: dict) -> list:
    """``sensitivity.csv``, ``sensitivity.md`` (the table under a line saying what it measured),
    ``sensitivity.png`` (:func:`plot`) and ``report.json`` (``meta``, ``df.attrs`` and the rows) in
    ``out_dir``; ``meta``: at least ``model``."""
    out = Path(out_dir)
    meta = {**meta, **df.attrs}
    df.to_csv(out / "sensitivity.csv", index=False)
    head = (f"Validation {meta['metric']} of `{meta['model']}`: {meta['reference']:.4f} (float), "
            f"{meta['n_examples']} examples. `drop` > 0 is worse."
            + (" `int4` rows: against the dynamic-range (int8-weight) file." if (df["kind"] == "int4").any() else "")
            + "\n\n")
    body = df.astype(object).where(df.notna(), None).to_markdown(index=False, floatfmt=".4g", missingval="")
    atomic_write_text(out / "sensitivity.md", head + body + "\n")
    plot(df, out / "sensitivity.png")
    write_json(out / "report.json", {**meta, "stage": "sensitivity", "rows": df.to_dict(orient="records")})
    return [out / n for n in ("sensitivity.csv", "sensitivity.md", "sensitivity.png", "report.json")]


__all__ = ["sensitivity", "sensitivity_table", "plot", "write", "text_table", "int8_rows", "int4_rows", "prune_rows", "COLUMNS"]
