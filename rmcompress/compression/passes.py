"""The pass registry: recipe pass name -> :class:`~rmcompress.compression.passbase.Pass` class.

Each pass adapts one pass module to the recipe state and verifies the result numerically against
the model it came from (the pass modules raise :class:`ModelError` when a check fails):
fuse (float outputs within ``tolerance``), factorise (vocabulary pruning: the tokenizer re-encodes
training texts, and with ``unseen_tokens`` unk/nearest validation texts too, to exactly the remapped ids
and the rewards are unchanged; SVD: reports the error),
prune/cluster (stripped model equals the wrapped model), length (checked at export on the TFLite),
budget (the shrunk model equals the gated one, in :mod:`rmcompress.structured.shrink`), quantise (judged at
export against the float or fake-quant model).

:data:`PASSES` holds the same names as :data:`rmcompress.compression.settings.SETTINGS` (the table a
recipe is validated against without loading TensorFlow), each pass with that table's settings class.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rmcompress.compression.attention import AttentionPass
from rmcompress.compression.budget import BudgetPass
from rmcompress.compression.cluster import cluster
from rmcompress.compression.exportplan import LengthPlan
from rmcompress.compression.factorise import check_tokenizer_remap, factorise, not_applicable
from rmcompress.compression.finetune import capped_steps, finetune, self_distillation_rows
from rmcompress.compression.fuse import fuse
from rmcompress.compression.length import choose_buckets, fixed_length_reason, min_length
from rmcompress.compression.passbase import Pass, PassResult
from rmcompress.compression.prune import prune
from rmcompress.compression.quantise import QuantisePass
from rmcompress.compression.settings import (ClusterSettings, FactoriseSettings, FuseSettings, LengthSettings,
                                          PruneSettings)
from rmcompress.compression.state import CompressState
from rmcompress.models.structure import count
from rmcompress.errors import ModelError

TOKENIZER_CHECK_ROWS = 2000


class FusePass(Pass):
    name = "fuse"
    Settings = FuseSettings

    def run(self, state: CompressState, s: FuseSettings) -> PassResult:
        before = count(state.model).as_dict()
        state.model, note = fuse(state.model, state.val_ids(256), s)
        after = count(state.model).as_dict()
        note.update(flops_before=before["flops"], flops_after=after["flops"])
        return PassResult(state, note, note.get("max_abs_diff"))


class FactorisePass(Pass):
    """``steps`` > 0 fine-tunes the factorised model; ``distill`` > 0 makes that self-distillation
    from the model before factorisation (:func:`rmcompress.compression.finetune.self_distillation_rows`:
    training rows, ``compress --unlabeled`` texts and the budget pass's augmented variants)."""

    name = "factorise"
    Settings = FactoriseSettings

    def run(self, state: CompressState, s: FactoriseSettings) -> PassResult:
        old_model, old_tok = state.model, state.tokenizer
        reason = not_applicable(old_model, old_tok)
        if reason:
            return PassResult(state, {"skipped": reason})
        rows = self_distillation_rows(state) if (s.distill and s.steps) else None
        train_ids = state.train_ids()
        # rows the kept vocabulary must cover: the training texts and the ``compress --unlabeled`` texts
        # (a distilling pass trained on those too; a pretrained encoder's rows for them are trained rows)
        unlabeled = state.unlabeled_raw.all_texts if state.unlabeled_raw is not None else []
        new, tok, remap, note = factorise(old_model, old_tok, state.train_raw.all_texts + unlabeled, s)
        note["counted_texts"] = {"train": len(state.train_raw.all_texts), "unlabeled": len(unlabeled)}
        if tok is not old_tok:  # pruned and/or reordered (full_rows)
            texts = state.train_raw.all_texts[:TOKENIZER_CHECK_ROWS]
            bad = check_tokenizer_remap(old_tok, tok, remap, texts)
            if bad:
                raise ModelError(f"factorise: the new vocabulary tokenises {bad} of {len(texts)} training "
                                 "texts differently from the remapped ids")
            note["tokenizer_check_rows"] = len(texts)
            if note.get("aliased_tokens"):  # every text keeps its pieces: held-out texts too
                held = state.val_raw.all_texts[:TOKENIZER_CHECK_ROWS]
                bad = check_tokenizer_remap(old_tok, tok, remap, held)
                if bad:
                    raise ModelError(f"factorise: with unseen_tokens {s.unseen_tokens} the new vocabulary "
                                     f"tokenises {bad} of {len(held)} validation texts differently")
                note["tokenizer_check_rows"] += len(held)
        sample = train_ids[:256]
        diff = float(np.max(np.abs(new.predict(remap[sample], verbose=0)
                                   - old_model.predict(sample, verbose=0)))) if len(sample) else 0.0
        note["max_abs_diff_on_training_rows"] = diff
        if "rank" not in note and diff > 1e-5:
            raise ModelError(f"factorise: vocabulary pruning changed rewards by {diff:.3g}")
        state.model = new
        if tok is not old_tok:
            state.reencode(tok)
        if s.steps:
            data = rows(state.tokenizer) if rows is not None else None
            extra = len(data) - len(state.train) if data is not None else 0
            run = capped_steps(state, s.steps, s.batch_size, extra_rows=extra)
            hist = finetune(state.model, state, run, s.learning_rate, s.batch_size, data=data, distill=s.distill)
            note["steps"], note["steps_requested"] = run, int(s.steps)
            note["final_train_loss"] = hist.get("loss", [None])[-1]
            note["distill"] = float(s.distill)
            note["distill_rows"] = len(data) if data is not None else 0
        return PassResult(state, note)


class PrunePass(Pass):
    name = "prune"
    Settings = PruneSettings

    def run(self, state: CompressState, s: PruneSettings) -> PassResult:
        state.model, note = prune(state.model, state, s)
        state.structure = dataclasses.replace(state.structure, pruned=tuple(note["layers"]))
        return PassResult(state, note, note["strip_max_abs_diff"])


class ClusterPass(Pass):
    name = "cluster"
    Settings = ClusterSettings

    def run(self, state: CompressState, s: ClusterSettings) -> PassResult:
        state.model, note = cluster(state.model, state, s)
        state.structure = dataclasses.replace(state.structure, clustered=tuple(note["layers"]),
                                              clusters_keep_zeros=bool(note["preserve_sparsity"]))
        return PassResult(state, note, note["strip_max_abs_diff"])


class LengthPass(Pass):
    """Plan a dynamic sequence length for the export (checked there on the TFLite file); a model that
    must keep its fixed length is left so, with the reason
    (:func:`rmcompress.compression.length.fixed_length_reason`). ``buckets: auto`` keeps a bucket plan
    an earlier pass chose (the ``attention`` pass's ``length`` alternative)."""

    name = "length"
    Settings = LengthSettings

    def run(self, state: CompressState, s: LengthSettings) -> PassResult:
        margin = min_length(state.model) - 1
        seq_len = state.tokenizer.seq_len
        planned = state.export.length
        if s.mode == "buckets" and s.buckets == "auto" and planned is not None and planned.buckets:
            return PassResult(state, {**planned.as_dict(), "kept": "the bucket plan an earlier pass chose"})
        buckets = None
        if s.mode == "buckets":
            if s.buckets == "auto":
                buckets = choose_buckets(state.train_ids(), seq_len, s.quantiles, margin=margin)
            else:
                buckets = sorted({min(seq_len, max(margin + 1, int(b))) for b in s.buckets} | {seq_len})
        reason = fixed_length_reason(state.model, state.val_ids(256), buckets, margin)
        if reason:
            return PassResult(state, {"mode": s.mode, "skipped": f"{reason}; the export keeps length {seq_len}"})
        plan = LengthPlan(s.mode, buckets, margin)
        state.export = dataclasses.replace(state.export, length=plan)
        return PassResult(state, plan.as_dict())


#: pass name -> pass class (the names and settings of :data:`rmcompress.compression.settings.SETTINGS`)
PASSES: dict[str, type[Pass]] = {p.name: p for p in (BudgetPass, AttentionPass, FusePass, FactorisePass, PrunePass, ClusterPass,
                                                     QuantisePass, LengthPass)}

__all__ = ["PASSES", "BudgetPass", "AttentionPass", "FusePass", "FactorisePass", "PrunePass", "ClusterPass", "QuantisePass",
           "LengthPass"]
