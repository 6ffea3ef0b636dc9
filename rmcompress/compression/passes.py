"""The pass table: recipe pass name -> ``run(state, **settings) -> (state, note)``.

Each runner adapts one pass module to the recipe state and verifies the result numerically against
the model it came from (the pass modules raise :class:`ModelError` when a check fails):
fuse (float outputs within ``tolerance``), factorise (vocabulary pruning: the tokenizer re-encodes
training texts to exactly the remapped ids and the rewards are unchanged; SVD: reports the error),
prune/cluster (stripped model equals the wrapped model), length (checked at export on the TFLite).
"""
from __future__ import annotations

import numpy as np

from rmcompress.compression.budget import budget_pass
from rmcompress.compression.cluster import cluster
from rmcompress.compression.factorise import check_tokenizer_remap, factorise
from rmcompress.compression.finetune import capped_steps, finetune, self_distillation_rows
from rmcompress.compression.fuse import fuse, max_abs_diff
from rmcompress.compression.length import choose_buckets, min_length
from rmcompress.compression.prune import prune
from rmcompress.compression.quantise import quantise_pass
from rmcompress.compression.state import CompressState
from rmcompress.errors import ModelError
from rmcompress.models.structure import count

TOKENIZER_CHECK_ROWS = 2000


def fuse_pass(state: CompressState, tolerance: float = 1e-5, **switches) -> tuple[CompressState, dict]:
    before = count(state.model).as_dict()
    state.model, note = fuse(state.model, state.val_ids(256), tolerance=tolerance, **switches)
    after = count(state.model).as_dict()
    note.update(flops_before=before["flops"], flops_after=after["flops"])
    return state, note


def factorise_pass(state: CompressState, vocab_prune: bool = True, min_count: int = 1, rank=None,
                   max_error=None, weighting: str = "frequency", steps: int = 0,
                   learning_rate: float = 1e-4, batch_size: int = 64,
                   distill: float = 0.0, full_rows: int = 0) -> tuple[CompressState, dict]:
    """``steps`` > 0 fine-tunes the factorised model; ``distill`` > 0 makes that self-distillation
    from the model before factorisation (:func:`rmcompress.compression.finetune.self_distillation_rows`:
    training rows, ``compress --unlabeled`` texts and the budget pass's augmented variants)."""

    old_model, old_tok = state.model, state.tokenizer
    rows = self_distillation_rows(state) if (distill and steps) else None
    train_ids = state.train_ids()
    # rows the kept vocabulary must cover: the training texts and the ``compress --unlabeled`` texts
    # (a distilling pass trained on those too; a pretrained encoder's rows for them are trained rows)
    unlabeled = state.unlabeled_raw.all_texts if state.unlabeled_raw is not None else []
    new, tok, remap, note = factorise(old_model, old_tok, state.train_raw.all_texts + unlabeled, vocab_prune,
                                      min_count, rank, max_error, weighting, full_rows)
    note["counted_texts"] = {"train": len(state.train_raw.all_texts), "unlabeled": len(unlabeled)}
    if tok is not old_tok:  # pruned and/or reordered (full_rows)
        texts = state.train_raw.all_texts[:TOKENIZER_CHECK_ROWS]
        bad = check_tokenizer_remap(old_tok, tok, remap, texts)
        if bad:
            raise ModelError(f"factorise: the new vocabulary tokenises {bad} of {len(texts)} training "
                             "texts differently from the remapped ids")
        note["tokenizer_check_rows"] = len(texts)
    sample = train_ids[:256]
    note["max_abs_diff_on_training_rows"] = float(np.max(np.abs(
        new.predict(remap[sample], verbose=0) - old_model.predict(sample, verbose=0)))) if len(sample) else 0.0
    if "rank" not in note and note["max_abs_diff_on_training_rows"] > 1e-5:
        raise ModelError(f"factorise: vocabulary pruning changed rewards by {note['max_abs_diff_on_training_rows']:.3g}")
    state.model = new
    if tok is not old_tok:
        state.reencode(tok)
    if steps:
        data = rows(state.tokenizer) if rows is not None else None
        extra = len(data) - len(state.train) if data is not None else 0
        run = capped_steps(state, steps, batch_size, extra_rows=extra)
        hist = finetune(state.model, state, run, learning_rate, batch_size, data=data, distill=distill)
        note["finetune_steps"] = run
        note["final_train_loss"] = hist.get("loss", [None])[-1]
        note["distill"] = float(distill)
        note["distill_rows"] = len(data) if data is not None else 0
    return state, note


def prune_pass(state: CompressState, **settings) -> tuple[CompressState, dict]:
    state.model, note = prune(state.model, state, **settings)
    return state, note


def cluster_pass(state: CompressState, **settings) -> tuple[CompressState, dict]:
    state.model, note = cluster(state.model, state, **settings)
    return state, note


def length_pass(state: CompressState, mode: str = "buckets", buckets="auto", quantiles=(0.5, 0.9)):
    margin = min_length(state.model) - 1
    seq_len = state.tokenizer.seq_len
    if mode == "buckets":
        if buckets == "auto":
            buckets = choose_buckets(state.train_ids(), seq_len, quantiles, margin=margin)
        else:
            buckets = sorted({min(seq_len, max(margin + 1, int(b))) for b in buckets} | {seq_len})
    else:
        buckets = None
    info = {"mode": mode, "buckets": buckets, "margin": margin, "min_length": margin + 1}
    state.export["length"] = info
    return state, dict(info)


PASSES = {"budget": budget_pass, "fuse": fuse_pass, "factorise": factorise_pass, "prune": prune_pass,
          "cluster": cluster_pass, "quantise": quantise_pass, "length": length_pass}

__all__ = ["PASSES", "max_abs_diff"]
