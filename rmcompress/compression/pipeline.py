"""``compress()``: model directory + recipe + data -> checked, measured SavedModel + TFLite.

Output directory (written atomically)::

    OUT/model.tflite, OUT/saved_model/, OUT/vocab.txt, OUT/tokenizer.json, OUT/metadata.json
                         the export (rmcompress.export.export_model), parity-checked
    OUT/model/           the compressed float Keras model directory (input to later stages)
    OUT/recipe.yaml      the recipe as run (defaults filled in)
    OUT/report.json      one result row (ARCHITECTURE.md keys + ``recipe``) and, under ``passes``,
                         what every pass did, each with ``validation``: where the accuracy went

The row: ``task``, ``n_examples`` (validation rows), the quality metric of the TFLite artifact on
the validation split, ``flops``, ``params``, ``size_bytes``/``size_gzip_bytes`` (model.tflite),
``latency_ms_p50`` (LiteRT, batch 1, one thread, at ``seq_len``; with a ``length`` pass also
``latency_ms_p50_real_length`` over the validation texts at their real lengths),
``tflite_precision`` / ``savedmodel_precision`` (``OUT/saved_model`` is the compressed float model,
not the quantised one: rmcompress.export.exporter), ``parity_max_abs_diff`` (TFLite vs the Keras
model it was converted from; the quantised bar is on decision agreement -- for pairwise models the
order of each pair -- and rank correlation), ``recipe``; and against the *source* model
(``source_model``, its directory): ``source_*`` (its accuracy and its dense float32 TFLite size and
latency), ``vs_source_decision_agreement`` / ``vs_source_spearman`` (on the same validation texts, each model
with its own tokenizer), the ratios ``size_ratio``, ``gzip_ratio``, ``latency_speedup`` and
``accuracy_drop_points`` with ``accuracy_drop_se_points``, its paired standard error on the
validation rows (:func:`rmcompress.metrics.paired_drop_se`; binary and pairwise models).
``latency_ms_p50`` and ``source_latency_ms_p50`` (TFLite exports) are timed after the export in one
process, the two files in 3 interleaved rounds cycling over the same validation rows
(:func:`rmcompress.evaluation.latency.interleaved_latency`), so ``latency_speedup`` is their ratio
under one load; ``latency_speedup_real_length`` divides the same source figure by the file's own
timing at real lengths, taken after them.

**Per-pass ledger.** After every pass the Keras model it left (the fake-quant model after
``quantise: {mode: qat}``) is scored on the validation rows: ``passes[i]["validation"]`` holds its
quality (``accuracy`` / ``pairwise_accuracy``, or ``mae`` for a regression loss), ``drop_points``
(``100 * (source - after)``, binary and pairwise) and ``decision_agreement`` with the source model's
decisions (pointwise: the sign of the reward; pairwise: each pair's order). The differences between
consecutive passes say which pass cost what; a post-training quantisation (``dynamic``, ``int8``,
``int4``, ``float16``) happens at export, so its cost is the gap between the last pass and the
file's own figure in the row.

**Shared prefixes.** With a :class:`rmcompress.compression.prefixcache.PrefixCache` (the search
gives one to all its runs) a run starts from the state an earlier run of the same model and data
left after the same first passes, and says so in its log and in those passes' notes (``reused``).

Progress: ``log`` gets a line as each step starts and, after each pass, ``pass NAME: S s`` (its wall
time) with the ledger's figure; ``verbose`` is Keras' for every training pass (0 none, 1 a bar, 2 a line per epoch);
``tensorboard=DIR`` gives every pass that trains a TensorBoard run of its own, ``DIR/NN-NAME/`` (``NN``
its place in the recipe; the budget pass: ``gated/``, ``gated/complexity/``, ``finetune/`` inside it,
:mod:`rmcompress.training.budget`). ``DIR`` is written in place while the passes train
(:func:`rmcompress.fileio.live_dir`: never an input or ``out``; an existing one needs ``overwrite``
and rmcompress having written it).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from rmcompress._keras import keras
from rmcompress.compression.passes import PASSES
from rmcompress.compression.prefixcache import PrefixCache
from rmcompress.compression.recipe import PassSpec, Recipe
from rmcompress.compression.state import CompressState, prepare_state
from rmcompress.config.progress import Progress
from rmcompress.data.pipeline import grouped_by_length
from rmcompress.errors import UsageError
from rmcompress.evaluation.latency import interleaved_latency
from rmcompress.export.exporter import export_model
from rmcompress.fileio import (atomic_dir, atomic_write_text, check_destination, live_dir, relative_source,
                               write_json)
from rmcompress.metrics import correct_rows, paired_drop_se, quality_key, quality_metrics, spearman
from rmcompress.models.modeldir import RewardModelBundle, load_model_dir, save_model_dir, save_samples
from rmcompress.models.structure import count
from rmcompress.runtime.tflite import convert, TFLiteRunner, strip_tensor_names
from rmcompress.compression import length as length_mod
from rmcompress.compression.quantise import build_tflite

PARITY_MODE = {"qat": "int8"}


def _scores(score, data) -> tuple:
    """Scores of every validation row: pointwise ``[n]``; pairwise ``(chosen, rejected)``."""
    if data.task == "pairwise":
        return score(data.chosen), score(data.rejected)
    return (score(data.ids),)


def _quality(task, loss, scores, data) -> dict:
    if task == "pairwise":
        return quality_metrics(task, scores, None, loss)
    return quality_metrics(task, scores[0], data.labels, loss)


def _keras_score(model):
    return lambda ids: model.predict(np.asarray(ids, np.int32), batch_size=256, verbose=0).reshape(-1)


def _source_baseline(state: CompressState) -> dict:
    """The source model on the validation split, its dense float32 TFLite file (``tflite``, timed
    against the compressed one after the export) and its size."""

    scores = _scores(_keras_score(state.model), state.val)
    flat = convert(state.model)
    import gzip

    return {"scores": scores, "tflite": flat,
            **{f"source_{k}": v for k, v in _quality(state.task, state.loss, scores, state.val).items()},
            "source_size_bytes": len(flat), "source_size_gzip_bytes": len(gzip.compress(flat, 9, mtime=0)),
            **{f"source_{k}": v for k, v in count(state.model).as_dict().items()}}


def compress(model, recipe, data, out: str | os.PathLike, overwrite: bool = False, verbose: int = 0,
             latency_runs: int | None = None, log=None, unlabeled=None, tensorboard=None, val_data=None,
             seed: int | None = None, cache: PrefixCache | None = None) -> dict:
    """Run ``recipe`` (a level name, YAML path, dict or :class:`Recipe`) on ``model`` (a model
    directory or a loaded bundle) with ``data`` (a file of the model's task, or loaded data); write
    ``out`` (module docstring) and return its report row. ``unlabeled``: a file of extra texts the
    ``budget`` pass distills on (needs ``distill`` > 0 there). ``val_data``: the validation rows
    (all of ``data`` then trains; the recipe's split settings are not used). ``seed``: the seed of
    what the passes draw (batch order, initialisation, word-replacement variants, calibration rows;
    default: the split's seed, the recipe's ``data.seed`` else the model's training seed).
    ``verbose``, ``log``, ``tensorboard``: what the run shows and logs (module docstring).
    ``cache``: a :class:`rmcompress.compression.prefixcache.PrefixCache` of this model and data; the
    run starts after the longest prefix of its recipe the cache keeps, and keeps its own state at
    the cache's branching points."""

    progress = Progress(verbose, tensorboard)
    recipe = Recipe.resolve(recipe)
    out = Path(out)
    inputs = [getattr(model, "path", model), data, unlabeled, val_data]
    check_destination(out, overwrite, inputs=inputs)
    if unlabeled is not None and not any(p.name in ("budget", "factorise") and p.settings.distill
                                         for p in recipe.passes):
        raise UsageError(f"--unlabeled {unlabeled}: recipe {recipe.name!r} has no pass that distills "
                         "(a budget or factorise pass with distill > 0); unlabeled texts carry no labels")
    with live_dir(tensorboard, overwrite, inputs=inputs, outputs=[out], kind="tensorboard"):
        return _compress(model, recipe, data, out, overwrite, progress, latency_runs, log, unlabeled,
                         val_data, seed, cache)


def _cache_context(bundle: RewardModelBundle, state: CompressState, recipe: Recipe, unlabeled, val_data) -> str:
    """What a kept prefix must share with the run that restores it besides its passes
    (:mod:`rmcompress.compression.prefixcache`)."""
    def digest(arrays) -> str:
        h = hashlib.sha256()
        for a in arrays:
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype, a.shape)).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    rows = [state.train_ids(), state.val_ids()]
    rows += [np.asarray(d.labels) for d in (state.train, state.val) if getattr(d, "labels", None) is not None]
    model = str(bundle.path) if bundle.path else digest(bundle.model.get_weights())
    return json.dumps([model, digest(rows), recipe.data, state.seed, str(unlabeled), str(val_data)],
                      sort_keys=True, default=str)


def _compress(model, recipe: Recipe, data, out: Path, overwrite: bool, progress: Progress, latency_runs,
              log, unlabeled, val_data=None, seed=None, cache: PrefixCache | None = None) -> dict:
    """:func:`compress` with the recipe resolved, ``out`` checked and the run's ``progress``."""
    log = log or (lambda msg: None)
    t_start = time.time()
    bundle = model if isinstance(model, RewardModelBundle) else load_model_dir(model)
    recipe.check_model([layer.name for layer in bundle.model.layers], str(bundle.path or "the model"))
    state = prepare_state(bundle, data, recipe.data, progress=progress, unlabeled=unlabeled, val_data=val_data,
                          seed=seed)
    runs = recipe.export["latency_runs"] if latency_runs is None else latency_runs
    log(f"[{recipe.name}] {len(state.train)} training / {len(state.val)} validation rows; scoring the source model")
    source = _source_baseline(state)
    done, keep = 0, None
    if cache is not None:
        context = _cache_context(bundle, state, recipe, unlabeled, val_data)
        done, restored = cache.restore(context, recipe.passes)
        if restored is not None:
            restored.progress = state.progress
            state = restored
            log(f"[{recipe.name}] reusing the state after {', '.join(p.name for p in recipe.passes[:done])} "
                "(kept by an earlier run of this search)")
        keep = (lambda i, s: cache.store(context, recipe.passes[:done + i], s))  # noqa: E731

    if state.length_slack is not None:
        log(f"[{recipe.name}] training batches grouped by length, {state.length_slack} tokens of padding kept")
    with grouped_by_length(state.length_slack):
        state = run_passes(state, recipe.passes[done:], lambda msg: log(f"[{recipe.name}] {msg}"),
                           measure=lambda s: pass_quality(s, source), after=keep, first=done + 1)
    log(f"[{recipe.name}] export")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        report = _export(state, recipe, tmp, source, runs)
        report["seconds"] = round(time.time() - t_start, 1)
        report["validation_data"] = None if val_data is None else str(getattr(val_data, "source", val_data))
        report["source_model"] = str(Path(bundle.path).resolve()) if bundle.path else None
        report["source_model_relative"] = relative_source(bundle.path, out)
        if state.length_slack is not None:
            report["length_slack"] = state.length_slack
        write_json(tmp / "report.json", report)
        _write_recipe(recipe, tmp / "recipe.yaml")
    return report


def pass_quality(state: CompressState, source: dict) -> dict:
    """The per-pass ledger entry (module docstring): the quality of the Keras model ``state`` holds
    (its fake-quant model after QAT) on the validation rows, its drop from the source model's
    (``source``: :func:`_source_baseline`'s scores and ``source_*`` figures; binary and pairwise) and
    the share of the source's decisions it keeps; None without validation rows."""
    if not len(state.val):
        return None
    model = state.qat_model if state.qat_model is not None else state.model
    scores = _scores(_keras_score(model), state.val)
    q = _quality(state.task, state.loss, scores, state.val)
    key = quality_key(state.task, state.loss)
    src = source["scores"]
    out = {key: q[key]}
    if state.task == "pairwise" or state.loss == "bce":
        out["drop_points"] = 100.0 * (source[f"source_{key}"] - q[key])
    if state.task == "pairwise":
        out["decision_agreement"] = float(np.mean((scores[0] > scores[1]) == (src[0] > src[1])))
    else:
        out["decision_agreement"] = float(np.mean((scores[0] > 0) == (src[0] > 0)))
    return out


def _ledger_text(v: dict) -> str:
    key = next(iter(v))
    drop = f" (drop {v['drop_points']:.2f} points)" if "drop_points" in v else ""
    return f"; validation {key} {v[key]:.4f}{drop}"


def run_passes(state: CompressState, specs: list[PassSpec], log=None, measure=None, after=None,
               first: int = 1) -> CompressState:
    """Run the recipe items ``specs`` in order (each looked up in the pass registry), each with its
    own TensorBoard run (``NN-NAME`` under ``state.progress``'s directory, ``NN`` counted from
    ``first``: the place in the recipe); append each pass's notes, with the seconds it took, to
    ``state.notes`` and log that time; return the final state. Every random draw is seeded from
    ``state.seed`` as each pass starts, so a pass's result depends on the state it gets, not on what
    ran before it in the process.
    ``measure(state) -> dict`` (:func:`pass_quality`): scored after every pass, kept in its notes as
    ``validation`` and logged. ``after(i, state)``: called with the state after the ``i``-th pass
    of ``specs`` (1-based), its notes complete."""
    log = log or (lambda msg: None)
    progress = state.progress
    for i, spec in enumerate(specs, 1):
        log(f"pass {spec.name} {spec.params}")
        t0 = time.time()
        keras.utils.set_random_seed(state.seed)  # each pass draws as if it were the first
        state.progress = progress.child(f"{i + first - 1:02d}-{spec.name}")
        try:
            result = PASSES[spec.name]()(state, spec.settings)
        finally:
            state.progress = progress
        state = result.state
        state.progress = progress
        seconds = time.time() - t0
        ledger = measure(state) if measure is not None else None
        state.notes.append({"pass": spec.name, "seconds": round(seconds, 2), **result.notes,
                            **({"validation": ledger} if ledger is not None else {})})
        log(f"pass {spec.name}: {seconds:.1f} s{_ledger_text(ledger) if ledger else ''}")
        if after is not None:
            after(i, state)
    return state


def _write_recipe(recipe: Recipe, path: Path) -> None:
    import yaml


    atomic_write_text(path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def _export(state: CompressState, recipe: Recipe, tmp: Path, source: dict, runs: int) -> dict:

    plan = state.export
    mode, length = plan.quantize, plan.length
    conv_model = length_mod.dynamic_length_model(state.model) if length else state.model
    qat_model = state.qat_model  # built with a dynamic length; converted at conv_model's length
    cal = state.calibration_ids(plan.calibration_samples) if plan.needs_calibration else None
    flat, qnote = build_tflite(conv_model, mode, cal, plan.keep_float_ops, plan.max_layer_error,
                               None if cal is None else cal[: plan.debug_samples], qat_model,
                               plan.min_layer_agreement, plan.embedding_bits,
                               getattr(state.tokenizer, "seq_len", None))
    if qnote:
        state.notes.append({"pass": "quantise-export", **qnote})
    if recipe.export.get("strip_names"):
        stripped = strip_tensor_names(flat)
        state.notes.append({"pass": "strip-names", "bytes_before": len(flat), "bytes_after": len(stripped)})
        flat = stripped
    val_ids = state.val_ids()
    metadata = {**state.metadata, "compressed_with": recipe.name}
    out_bundle = RewardModelBundle(state.model, state.tokenizer, metadata)
    extra_meta = {"recipe": recipe.name}
    if length:
        extra_meta.update(length=length.as_dict(), input={
            "name": "token_ids", "dtype": "int32", "shape": [-1, -1], "padding_id": 0,
            "min_length": length.min_length, "pad_after_last_token": length.margin,
            "rule": "pad each text to the smallest bucket >= its token count + pad_after_last_token"})
    # QAT: the int8 file must reproduce the fake-quant model it was trained as (its distance to the
    # float source is measured below, vs_source_*); everything else: the float model it came from
    reference = qat_model.predict(val_ids, batch_size=256, verbose=0) if mode == "qat" else None
    exp = export_model(out_bundle, tmp, recipe.export["formats"], quantize=mode, parity_ids=val_ids,
                       calibration_ids=cal, overwrite=True, latency_runs=0, tflite_model=flat,
                       parity_mode=PARITY_MODE.get(mode, mode), metadata_extra=extra_meta,
                       parity_pairs=state.task == "pairwise", reference_scores=reference)
    runner = TFLiteRunner(flat)
    scores = _scores(runner.score, state.val)
    src_lat = None
    if runs and "tflite" in recipe.export["formats"]:  # both files under one load (module docstring)
        src_lat, lat = interleaved_latency([source["tflite"], runner], val_ids[:256], runs=runs)
        exp.update(latency_ms_p50=lat["latency_ms_p50"], latency_ms_p90=lat["latency_ms_p90"])
    report = {"name": recipe.name, "recipe": recipe.name, "task": state.task, "n_examples": len(state.val),
              "n_train": len(state.train), "seed": state.seed, "quantize": mode,
              **_quality(state.task, state.loss, scores, state.val),
              **{k: exp[k] for k in ("flops", "params", "size_bytes", "size_gzip_bytes", "latency_ms_p50",
                                     "latency_ms_p90", "parity_max_abs_diff", "parity_decision_agreement",
                                     "parity_spearman", "savedmodel_size_bytes", "kind", "tflite_precision",
                                     "savedmodel_precision") if k in exp}}
    a = np.concatenate([np.asarray(s).reshape(-1) for s in scores])
    b = np.concatenate([np.asarray(s).reshape(-1) for s in source["scores"]])
    if state.task == "pairwise":  # the decision is the pair's order
        report["vs_source_decision_agreement"] = float(np.mean(((scores[0] - scores[1]) > 0) ==
                                                               ((source["scores"][0] - source["scores"][1]) > 0)))
    else:
        report["vs_source_decision_agreement"] = float(np.mean((a > 0) == (b > 0)))
    report["vs_source_spearman"] = spearman(a, b)
    if state.task == "pairwise" or state.loss == "bce":
        report["accuracy_drop_se_points"] = paired_drop_se(*(
            correct_rows(state.task, s if state.task == "pairwise" else s[0],
                         None if state.task == "pairwise" else state.val.labels)
            for s in (source["scores"], scores)))
    report["vs_source_max_abs_diff"] = float(np.max(np.abs(a - b)))
    report.update({k: v for k, v in source.items() if k not in ("scores", "tflite")})
    if src_lat is not None:
        report["source_latency_ms_p50"] = src_lat["latency_ms_p50"]
    _ratios(report)
    if length:
        lat = length_mod.latency_at_lengths(flat, val_ids[:256], length.buckets, length.margin,
                                            runs=max(runs, 50)) if runs else {}
        report.update(lat)
        report["length_mode"] = length.mode
        report["length_buckets"] = length.buckets
        trim_runner = TFLiteRunner(flat)
        report["length_trim_max_abs_diff"] = length_mod.check_trim_parity(
            runner.score, trim_runner.score, val_ids[:256],
            length_mod.parity_buckets(length.buckets, state.tokenizer.seq_len), length.margin)
        if report.get("latency_ms_p50_real_length") and report.get("source_latency_ms_p50"):
            report["latency_speedup_real_length"] = report["source_latency_ms_p50"] / report["latency_ms_p50_real_length"]

    def extra(d: Path):
        save_samples(d, val_ids, state.train_ids(), state.seed)

    save_model_dir(tmp / "model", state.model, state.tokenizer, metadata,
                   {**{k: v for k, v in report.items() if k != "passes"}, "stage": "compress"}, extra=extra)
    report["passes"] = state.notes
    return report


def _ratios(r: dict) -> None:
    if r.get("size_bytes"):
        r["size_ratio"] = r["source_size_bytes"] / r["size_bytes"]
    if r.get("size_gzip_bytes"):
        r["gzip_ratio"] = r["source_size_gzip_bytes"] / r["size_gzip_bytes"]
    if r.get("latency_ms_p50") and r.get("source_latency_ms_p50"):
        r["latency_speedup"] = r["source_latency_ms_p50"] / r["latency_ms_p50"]
    for k in ("accuracy", "pairwise_accuracy"):
        if k in r and f"source_{k}" in r:
            r["accuracy_drop_points"] = 100.0 * (r[f"source_{k}"] - r[k])

