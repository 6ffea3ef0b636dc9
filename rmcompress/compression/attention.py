"""``attention``: what to do with a transformer that a budget left with at most ``max_heads`` heads.

Runs after ``budget``. When the model has attention heads left, ``1 <= heads <= max_heads`` in total
(:attr:`rmcompress.models.dependency.Structure.head_groups`), it builds the recipe's ``alternatives``
and keeps the best on the **validation** split; otherwise (more heads, or attention already gone) it
does nothing and says why.

- ``keep``: the model as it is.
- ``drop``: every attention branch removed. Each heads group is gated
  (:func:`rmcompress.structured.gating.gated_copy`), its gate closed, and the model shrunk: a branch
  listed in ``Structure.removals`` then goes exactly, its output bias folding into the layer before
  the residual add (a model whose branch cannot go is skipped with the reason). Verified: the shrunk
  model equals the closed-gate model within ``tolerance * max(1, max |r|)`` on validation rows
  (:func:`rmcompress.metrics.rounding_bound`). Then ``steps`` of the
  one fine-tune loop (:func:`rmcompress.compression.finetune.finetune`) train the pooled FFN stack.
- ``length``: the model as it is, exported with the shorter buckets that ``quantiles`` choose from
  the training lengths (:func:`rmcompress.compression.length.choose_buckets`). Verified: every
  validation row scored at its bucket's length equals its full-length score within the same bound.

Choice: the validation metric ``m`` (``accuracy``, ``pairwise_accuracy``, or ``spearman`` for
real-valued labels) of every alternative; the candidates within ``max_drop`` points of the best
``m`` (default 0: only the best) are the eligible ones, and of those the cheapest wins: fewer FLOPs
at ``seq_len`` (registry), then fewer tokens per validation text (``length`` runs each text at its
bucket; the others at ``seq_len``, or at the later ``length`` pass's buckets, which ``keep`` and
``drop`` share). So ``length`` beats ``keep`` only on cost, never on accuracy (its scores are equal
by construction), and ``drop`` wins when its validation metric does. The note records every
alternative's validation figures, FLOPs, params, tokens and check, and ``chosen``.

When ``length`` is chosen, the export plan gets its buckets; a later ``length`` pass with
``buckets: auto`` keeps a plan that is already set (:class:`rmcompress.compression.passes.LengthPass`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rmcompress.compression.exportplan import LengthPlan
from rmcompress.compression.finetune import capped_steps, finetune
from rmcompress.compression.length import (bucket_for, choose_buckets, dynamic_length_model, fixed_length_reason,
                                           min_length, needed_lengths, trim)
from rmcompress.compression.passbase import Pass, PassResult
from rmcompress.compression.settings import AttentionSettings
from rmcompress.compression.state import CompressState
from rmcompress.errors import ModelError
from rmcompress.layers.gates import CLOSED_LOG_ALPHA, gate_layers
from rmcompress.metrics import quality_metrics, rounding_bound
from rmcompress.models.structure import count, structure_of
from rmcompress.structured.gating import gated_copy
from rmcompress.structured.shrink import shrink


def attention_heads(model) -> dict:
    """``{heads group: heads}`` of every attention layer the structure discovery found."""
    s = structure_of(model)
    return {g: int(s.groups[g]) for g in set(s.head_groups.values()) if g in s.groups}


def primary_metric(task: str, loss: str) -> str:
    """The validation figure the choice maximises."""
    return "pairwise_accuracy" if task == "pairwise" else ("accuracy" if loss == "bce" else "spearman")


def validation_quality(state: CompressState, score) -> dict:
    """Quality metrics of ``score(ids) -> [n]`` on the validation split."""
    v = state.val
    if state.task == "pairwise":
        return quality_metrics("pairwise", (score(v.chosen), score(v.rejected)))
    return quality_metrics(state.task, score(v.ids), v.labels, state.loss)


def keras_score(model):
    return lambda ids: model.predict(np.asarray(ids, np.int32), batch_size=256, verbose=0).reshape(-1)


def bucketed_score(model, buckets: list[int], margin: int, seq_len: int):
    """``score(ids)`` that runs each row at the smallest bucket holding its tokens (+ ``margin``)."""
    dyn = dynamic_length_model(model)

    def score(ids):
        ids = np.asarray(ids, np.int32)
        out = np.zeros(len(ids), np.float32)
        lens = needed_lengths(ids, margin, seq_len)
        at = np.array([bucket_for(max(int(n), 1), buckets) for n in lens])
        for b in sorted(set(at.tolist())):
            rows = np.flatnonzero(at == b)
            out[rows] = dyn.predict(trim(ids[rows], b), batch_size=256, verbose=0).reshape(-1)
        return out
    return score


def mean_tokens(ids: np.ndarray, buckets: list[int] | None, margin: int, seq_len: int) -> float:
    """Mean input width per row: its bucket, or ``seq_len`` without buckets."""
    if not buckets:
        return float(seq_len)
    return float(np.mean([bucket_for(max(int(n), 1), buckets) for n in needed_lengths(ids, margin, seq_len)]))


def drop_attention(model, tolerance: float, check_ids: np.ndarray):
    """``model`` without its attention branches (module docstring), and the measured max abs diff
    against the closed-gate model; raises :class:`ModelError` when a branch cannot go or the check fails."""
    s = structure_of(model)
    groups = sorted(set(s.head_groups.values()))
    cannot = [layer for layer, g in s.head_groups.items() if layer not in s.removals]
    if cannot:
        raise ModelError(f"attention: layer {cannot[0]!r} is not a removable residual branch")
    gated = gated_copy(model, groups=groups)
    gates = gate_layers(gated)
    for g in groups:
        gates[g].log_alpha.assign(np.full(gates[g].log_alpha.shape, CLOSED_LOG_ALPHA, np.float32))
    reference = keras_score(gated)(check_ids)
    small = shrink(gated)
    if attention_heads(small):
        raise ModelError(f"attention: shrinking with closed head gates left heads {attention_heads(small)}")
    diff = float(np.max(np.abs(keras_score(small)(check_ids) - reference))) if len(check_ids) else 0.0
    if not diff <= rounding_bound(reference, tolerance):
        raise ModelError(f"attention: the model without attention differs from the closed-gate model by "
                         f"{diff:.3g} (> {rounding_bound(reference, tolerance):.3g}: tolerance {tolerance:g} x "
                         "max(1, max |reward|))")
    return small, diff


def choose(candidates: dict, metric: str, max_drop: float) -> str:
    """The alternative to keep: within ``max_drop`` points of the best validation ``metric``, the
    cheapest by ``(flops, tokens)``; ties in cost go to the better metric, then to the first listed."""
    best = max(c[metric] for c in candidates.values())
    eligible = [n for n, c in candidates.items() if 100.0 * (best - c[metric]) <= max_drop + 1e-9]
    order = list(candidates)
    return min(eligible, key=lambda n: (candidates[n]["flops"], candidates[n]["tokens"],
                                        -candidates[n][metric], order.index(n)))


class AttentionPass(Pass):
    """Keep, drop or shorten the last attention head by validation (module docstring)."""

    name = "attention"
    Settings = AttentionSettings

    def run(self, state: CompressState, s: AttentionSettings) -> PassResult:
        heads = attention_heads(state.model)
        total = sum(heads.values())
        if total == 0 or total > s.max_heads:
            why = "no attention heads left" if total == 0 else f"{total} heads left (> max_heads {s.max_heads})"
            return PassResult(state, {"skipped": why, "heads": heads, "steps": 0, "steps_requested": int(s.steps)})
        metric = primary_metric(state.task, state.loss)
        seq_len = state.tokenizer.seq_len
        val_ids = state.val_ids()
        margin = min_length(state.model) - 1
        planned = state.export.length
        base_tokens = mean_tokens(val_ids, planned.buckets if planned else None, margin, seq_len)
        cands: dict = {}
        models: dict = {}
        skipped: dict = {}

        def add(name, model, score, tokens, **extra):
            c = count(model).as_dict()
            cands[name] = {**validation_quality(state, score), "flops": int(c["flops"]), "params": int(c["params"]),
                           "tokens": tokens, **extra}
            models[name] = model

        for alt in s.alternatives:
            if alt == "keep":
                add("keep", state.model, keras_score(state.model), base_tokens)
            elif alt == "drop":
                try:
                    small, diff = drop_attention(state.model, s.tolerance, val_ids[:256])
                except ModelError as e:
                    skipped["drop"] = str(e)
                    continue
                steps = capped_steps(state, s.steps, s.batch_size)
                hist = finetune(small, state, steps, s.learning_rate, s.batch_size)
                add("drop", small, keras_score(small), base_tokens, shrink_max_abs_diff=diff, finetune_steps=steps,
                    final_train_loss=hist.get("loss", [None])[-1])
            elif alt == "length":
                buckets = choose_buckets(state.train_ids(), seq_len, s.quantiles, margin=margin)
                reason = fixed_length_reason(state.model, val_ids[:256], buckets, margin)
                if reason:
                    skipped["length"] = reason
                    continue
                score = bucketed_score(state.model, buckets, margin, seq_len)
                full = keras_score(state.model)(val_ids[:256])
                diff = float(np.max(np.abs(score(val_ids[:256]) - full)))
                if not diff <= rounding_bound(full, s.tolerance):
                    raise ModelError(f"attention: scores at length buckets {buckets} differ from full length "
                                     f"by {diff:.3g} (> {rounding_bound(full, s.tolerance):.3g}: tolerance "
                                     f"{s.tolerance:g} x max(1, max |reward|))")
                add("length", state.model, score, mean_tokens(val_ids, buckets, margin, seq_len),
                    buckets=buckets, trim_max_abs_diff=diff)
        if not cands:
            return PassResult(state, {"skipped": "no alternative could be built", "heads": heads, "steps": 0,
                                      "steps_requested": int(s.steps),
                                      "alternatives_skipped": skipped})
        chosen = choose(cands, metric, s.max_drop)
        state.model = models[chosen]
        if chosen == "length":
            plan = LengthPlan("buckets", cands["length"]["buckets"], margin)
            state.export = dataclasses.replace(state.export, length=plan)
        note = {"heads": heads, "metric": metric, "max_drop": s.max_drop, "alternatives": cands,
                "chosen": chosen, "chosen_validation": cands[chosen][metric],
                "steps": int(cands.get("drop", {}).get("finetune_steps", 0)), "steps_requested": int(s.steps)}
        if skipped:
            note["alternatives_skipped"] = skipped
        return PassResult(state, note)
