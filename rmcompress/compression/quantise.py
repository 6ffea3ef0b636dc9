"""``quantise``: post-training quantisation (float16, dynamic range, int8) and QAT, made to keep accuracy.

Modes (the TFLite file's precision):

- ``float16`` / ``dynamic``: :func:`rmcompress.runtime.tflite.convert` (weights only);
- ``int4``: the ``dynamic`` file with the fully-connected weights (Dense, EinsumDense) and embedding
  tables in 4 bits, float activations (:mod:`rmcompress.runtime.int4`: per-channel symmetric, the
  layout LiteRT's XNNPACK runs as dynamically quantised fully-connected layers). With
  ``min_layer_agreement`` the choice is per Keras layer: each layer's weights are made 4-bit alone
  (every other weight int8, as in ``dynamic``) and scored on the debug rows; a layer whose file
  orders the rows' rewards like the float file for fewer than this share of row pairs keeps int8
  weights (mixed 4/8-bit, :func:`build_int4`);
- ``int8``: full-integer post-training quantisation calibrated on ``calibration_samples`` rows of
  the *training* split. The model is calibrated once; then

  * ``keep_float_ops``: TFLite op types kept in float. ``auto`` times every op of the int8 and the
    float model on its own (:mod:`rmcompress.evaluation.op_profile`) and keeps in float each op type
    whose int8 kernels are slower than its float kernels (on x86 XNNPACK: the int8 BATCH_MATMUL,
    SOFTMAX, SQUARED_DIFFERENCE and RSQRT of attention and LayerNormalization run on slow reference
    kernels) -- the fix for "full int8 is slower than float32";
  * ``max_layer_error``: the TFLite quantisation debugger measures each quantised tensor's error
    against float (``rmse / scale``: 0.29 is pure rounding noise); tensors above the bound stay
    float (``denylisted_nodes``) and are listed in the report as kept in higher precision.

  * ``min_layer_agreement``: each Keras layer is made int8 alone (the others float, as
    ``rmcompress sensitivity`` does) and scored on the debug rows; a layer whose file orders the
    rows' rewards like the float file for fewer than this share of row pairs (``(1 + Kendall's
    tau) / 2``: label-free, the decision a pairwise comparison makes) stays float.

  The debugger's per-tensor errors (top 10) are always reported for int8.
- ``embedding_bits: 4`` (``int8`` and ``qat``): the converted file's embedding tables (those with more
  rows than one call looks up: not a position table) are made 4-bit after conversion
  (:func:`rmcompress.runtime.int4.int4_tables`), the looked-up rows put back to int8 for the ops after
  them: losslessly as indices into a palette when the table holds at most 16 values (a table
  clustered to <= 16 values, as ``cluster``'s ``embedding_clusters`` does), else per column with
  extra rounding, which the parity check against the model the file came from measures like any
  other. A file whose bytes are mostly a token table is then about 40% smaller.
- ``int16x8``: int16 activations / int8 weights. The TF 2.21 converter fails on these models (the
  int32 ids input has no calibration range: tensorflow/tensorflow#60799); reported as an error.
- ``qat``: quantisation-aware training with tfmot (:mod:`rmcompress.compression.qat`) for ``steps``
  batches, then conversion of the fake-quant model (ranges learnt in training). After ``prune``
  the weight quantizers preserve sparsity (PQAT), after ``cluster`` the clusters (CQAT, PCQAT).

The pass itself only trains (QAT); conversion happens at export, after every pass (a later
``length`` pass changes the input shape), by :func:`build_tflite`.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from rmcompress._keras import keras, tf
from rmcompress.compression import qat
from rmcompress.compression.finetune import capped_steps, finetune
from rmcompress.compression.length import dynamic_length_model
from rmcompress.compression.passbase import Pass, PassResult
from rmcompress.compression.settings import QuantiseSettings
from rmcompress.compression.state import CompressState
from rmcompress.errors import ExportError
from rmcompress.evaluation.op_profile import fastest_over_rounds, profile_ops
from rmcompress.runtime.int4 import int4_candidates, int4_tables, table_forms, to_int4
from rmcompress.runtime.tflite import TFLiteRunner, convert, tflite_concrete_function
from rmcompress.compression.targets import select_layers, weight_arrays

INT16_ERROR = ("quantise mode int16x8: the TFLite converter (TF 2.21) cannot quantise these models "
               "(no calibration range for the int32 token-id input; tensorflow/tensorflow#60799); "
               "use int8 or dynamic")


class QuantisePass(Pass):
    """Record the export precision; for ``qat`` build and train the fake-quant model."""

    name = "quantise"
    Settings = QuantiseSettings

    def run(self, state: CompressState, s: QuantiseSettings) -> PassResult:
        state.export = dataclasses.replace(state.export, quantize=s.mode, calibration_samples=s.calibration_samples,
                                           keep_float_ops=s.keep_float_ops, max_layer_error=s.max_layer_error,
                                           min_layer_agreement=s.min_layer_agreement,
                                           debug_samples=s.debug_samples, embedding_bits=s.embedding_bits)
        note = {"mode": s.mode, "steps": 0, "steps_requested": int(s.steps)}  # only qat trains
        if s.mode == "int16x8":
            raise ExportError(INT16_ERROR)
        if s.mode == "qat":
            preserve = state.structure.preserve()
            float_model = state.model
            # built with a dynamic sequence dimension: trains on full-length or length-grouped batches (recipe
            # data.group_by_length), converts either way
            qat_model = qat.quantize_model(dynamic_length_model(float_model), preserve=preserve,
                                           preserve_layers=set(state.structure.layers) or None)
            ref = float_model.predict(state.val_ids(256), verbose=0).reshape(-1)
            steps = capped_steps(state, s.steps, s.batch_size)
            history = finetune(qat_model, state, steps, s.learning_rate, s.batch_size)
            note["steps_requested"] = s.steps
            fq = qat_model.predict(state.val_ids(256), verbose=0).reshape(-1)
            state.qat_model = qat_model
            state.model = qat.float_model_from_qat(qat_model, float_model)
            note.update(preserve=preserve, steps=steps,
                        qat_vs_float_decision_agreement=float(np.mean((fq > 0) == (ref > 0))),
                        quantized_layers=[l.name for l in qat_model.layers if hasattr(l, "quantize_config")])
            if preserve != "none":
                note["weights_after_qat"] = _structure_after(state.model, preserve)
            if history:
                note["final_train_loss"] = history.get("loss", [None])[-1]
        return PassResult(state, note)


def _structure_after(model: keras.Model, preserve: str) -> dict:
    """Sparsity and distinct values of the kernels after collaborative QAT (what was preserved)."""

    out = {}
    for n in select_layers(model, {"exclude": []}):
        for k, v in weight_arrays(model.get_layer(n)).items():
            out[f"{n}/{k}"] = {"sparsity": float(np.mean(v == 0)), "distinct": int(len(np.unique(v)))}
    return out


# -- conversion -----------------------------------------------------------------------------------
def _converter(model: keras.Model, calibration_ids: np.ndarray | None = None):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([tflite_concrete_function(model)], model)
    if calibration_ids is not None:
        reps = np.asarray(calibration_ids, np.int32)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([r[np.newaxis, :]] for r in reps)
    return conv


def calibrate(model: keras.Model, calibration_ids: np.ndarray) -> bytes:
    """The calibrated float model (ranges recorded, nothing quantised yet)."""
    conv = _converter(model, calibration_ids)
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True  # noqa: SLF001  (the documented debugger route)
    try:
        return conv.convert()
    except Exception as e:
        raise ExportError(f"int8 calibration failed: {str(e).splitlines()[0][:300]}") from None


def quantize_calibrated(calibrated: bytes, denylisted_ops=None, denylisted_nodes=None) -> bytes:
    """Full int8 from a calibrated model; ``denylisted_*`` stay float."""
    from tensorflow.lite.python import convert as tfl_convert

    try:
        return tfl_convert.mlir_quantize(calibrated, denylisted_ops=list(denylisted_ops or []) or None,
                                         denylisted_nodes=list(denylisted_nodes or []) or None)
    except Exception as e:
        raise ExportError(f"int8 quantisation failed: {str(e).splitlines()[0][:300]}") from None


def layer_errors(model: keras.Model, calibration_ids: np.ndarray, debug_ids: np.ndarray,
                 denylisted_ops=None) -> pd.DataFrame:
    """Per-tensor int8 error from the TFLite quantisation debugger (one row per quantised op output):
    ``tensor_name``, ``op_name``, ``scale``, ``rmse/scale`` (rounding noise alone: 1/sqrt(12) = 0.29),
    ``max_abs_error``; worst first."""
    debug_ids = np.asarray(debug_ids, np.int32)
    opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(denylisted_ops or []) or None)
    try:
        dbg = tf.lite.experimental.QuantizationDebugger(
            converter=_converter(model, calibration_ids),
            debug_dataset=lambda: ([r[np.newaxis, :]] for r in debug_ids), debug_options=opts)
        dbg.run()
        buf = io.StringIO()
        dbg.layer_statistics_dump(buf)
    except Exception as e:
        raise ExportError(f"quantisation debugger failed: {str(e).splitlines()[0][:300]}") from None
    buf.seek(0)
    df = pd.read_csv(buf)
    df["rmse/scale"] = np.sqrt(df["mean_squared_error"]) / df["scale"].where(df["scale"] > 0)
    return df.sort_values("rmse/scale", ascending=False).reset_index(drop=True)


def tensor_layer(tensor_name: str, layer_names: set) -> str | None:
    """The Keras layer a TFLite tensor belongs to: the first path component of its name (any of the
    ``;``-joined names of a fused op) that is a layer name."""
    for part in str(tensor_name).split(";"):
        for component in part.split("/"):
            if component in layer_names:
                return component
    return None


def only_int8(calibrated: bytes, tensors, keep) -> bytes:
    """The int8 file of a calibrated model with only the tensors in ``keep`` quantised: every other
    quantisable tensor (``tensors``) is a denylisted node and stays float."""
    keep = set(keep)
    return quantize_calibrated(calibrated, denylisted_nodes=[t for t in tensors if t not in keep])


#: the name :func:`layer_tensors` gives tensors no layer name matches (the op writing the output)
OUTPUT_OP = "(model output)"


def layer_tensors(model: keras.Model, errors: pd.DataFrame) -> dict:
    """``{layer name: [its quantisable tensor names]}`` from :func:`layer_errors`' table; tensors
    named after no layer (the op that writes the model's output takes the output's name) are
    :data:`OUTPUT_OP`'s."""
    names = {layer.name for layer in model.layers}
    out: dict = {}
    for t in errors["tensor_name"]:
        if isinstance(t, str):
            out.setdefault(tensor_layer(t, names) or OUTPUT_OP, []).append(t)
    return out


def order_agreement(reference, candidate) -> float:
    """Share of row pairs two reward vectors order alike: ``(1 + Kendall's tau) / 2`` (label-free:
    the decision a pairwise comparison makes; 1.0 when there are fewer than two rows)."""
    r, c = np.asarray(reference, np.float64).ravel(), np.asarray(candidate, np.float64).ravel()
    if len(r) < 2:
        return 1.0
    tau = kendalltau(r, c).statistic
    return 1.0 if np.isnan(tau) else float((1.0 + tau) / 2.0)


def disagreeing_layers(model: keras.Model, calibrated: bytes, errors: pd.DataFrame, debug_ids: np.ndarray,
                       min_agreement: float) -> tuple[list, dict]:
    """``(layers, {layer: agreement})``: each layer made int8 alone (:func:`only_int8`), the share of
    debug-row pairs its file orders like the float file (:func:`order_agreement`); the layers below
    ``min_agreement``."""
    reference = TFLiteRunner(convert(model)).score(debug_ids)
    by_layer = layer_tensors(model, errors)
    tensors = [t for ts in by_layer.values() for t in ts]
    agree = {layer: order_agreement(reference, TFLiteRunner(only_int8(calibrated, tensors, own)).score(debug_ids))
             for layer, own in by_layer.items()}
    return sorted(k for k, v in agree.items() if v < min_agreement), agree


def slow_int8_ops(int8_bytes: bytes, float_bytes: bytes, ids: np.ndarray, margin: float = 1.5,
                  min_us: float = 2.0, rounds: int = 3, runs: int = 30) -> tuple[list, pd.DataFrame]:
    """Op types whose int8 kernels are slower than their float kernels, summed over the model: more
    than ``margin`` times and by more than ``min_us`` microseconds.

    Single-op timings of a few microseconds move with whatever else the machine runs, and a choice
    made on one noisy sample changes the file (and its accuracy) from run to run. So the two files
    are profiled in turn, ``rounds`` times each (int8, float, int8, float, ...), and each op's time
    is its fastest median over the rounds: a load spike in one round does not flip the decision."""

    q_tables, f_tables = [], []
    for _ in range(rounds):
        q_tables.append(profile_ops(int8_bytes, ids[:1], runs=runs))
        f_tables.append(profile_ops(float_bytes, ids[:1], runs=runs))
    q, f = fastest_over_rounds(q_tables), fastest_over_rounds(f_tables)
    qs = q[q["dtype"] == "int8"].groupby("op")["us"].sum()
    fs = f[f["dtype"] == "float32"].groupby("op")["us"].sum()
    table = pd.DataFrame({"int8_us": qs, "float_us": fs}).dropna()
    slow = sorted(table.index[(table["int8_us"] > margin * table["float_us"]) &
                              (table["int8_us"] - table["float_us"] > min_us)])
    return slow, table.reset_index(names="op")


def int4_layers(model: keras.Model, dynamic: bytes) -> dict:
    """``{layer: [tensor names]}``: the weight tensors of the ``dynamic`` file that can hold 4-bit
    values (:func:`rmcompress.runtime.int4.int4_candidates`, even last dimension), by the Keras layer
    they belong to (:func:`tensor_layer`; ``(model output)`` for the op writing the output)."""
    names = {layer.name for layer in model.layers}
    by_layer: dict = {}
    for w in int4_candidates(dynamic):
        if w.packable:
            by_layer.setdefault(tensor_layer(w.name, names) or OUTPUT_OP, []).append(w.name)
    return by_layer


def build_int4(model: keras.Model, debug_ids=None, min_layer_agreement: float | None = None) -> tuple[bytes, dict]:
    """The ``int4`` file (module docstring) and a note: ``int4_tensors`` / ``int8_tensors`` (the weight
    tensors at each width; a tensor whose last dimension is odd stays int8), ``dynamic_bytes`` (the
    size of the all-int8 ``dynamic`` file it started from) and, with
    ``min_layer_agreement``, ``int8_layers`` (kept at 8 bits by the check) and
    ``int4_layer_agreement`` (each layer's 4-bit-alone agreement with the float file)."""
    if min_layer_agreement is not None and (debug_ids is None or len(debug_ids) == 0):
        raise ExportError("int4 with min_layer_agreement needs debug rows")
    dynamic, float32 = convert(model, "dynamic"), convert(model)
    weights = int4_candidates(dynamic)
    by_layer = int4_layers(model, dynamic)
    four = [t for ts in by_layer.values() for t in ts]
    note: dict = {}
    if min_layer_agreement is not None:
        reference = TFLiteRunner(float32).score(debug_ids)
        agree = {layer: order_agreement(reference, TFLiteRunner(to_int4(dynamic, float32, own)).score(debug_ids))
                 for layer, own in by_layer.items()}
        kept = sorted(k for k, v in agree.items() if v < min_layer_agreement)
        four = [t for t in four if not any(t in by_layer[k] for k in kept)]
        note.update(int8_layers=kept, int4_layer_agreement={k: round(v, 4) for k, v in agree.items()})
    note.update(int4_tensors=four, int8_tensors=[w.name for w in weights if w.name not in four],
                dynamic_bytes=len(dynamic))
    return to_int4(dynamic, float32, four), note


def build_tflite(model: keras.Model, mode: str, calibration_ids: np.ndarray | None = None,
                 keep_float_ops=None, max_layer_error: float | None = None, debug_ids=None,
                 qat_model: keras.Model | None = None,
                 min_layer_agreement: float | None = None, embedding_bits: int = 8,
                 seq_len: int | None = None) -> tuple[bytes, dict]:
    """The TFLite flatbuffer of ``mode`` (``none`` = float32) and a note of what was kept in float;
    ``embedding_bits`` 4 (``int8`` / ``qat``): the file's embedding tables with more rows than one call
    looks up (``seq_len``, default the model's input length) in 4 bits
    (:func:`rmcompress.runtime.int4.int4_tables`; a table looked up by position stays int8, as every
    call would unpack all of it), each table's form in the note."""
    flat, note = _build_tflite(model, mode, calibration_ids, keep_float_ops, max_layer_error, debug_ids,
                               qat_model, min_layer_agreement)
    if embedding_bits == 4 and mode in ("int8", "qat"):
        rows = (seq_len or model.input_shape[1] or 0) + 1
        forms = table_forms(flat, min_rows=rows)
        four = int4_tables(flat, min_rows=rows)
        note.update(int4_tables=forms, bytes_before_int4_tables=len(flat))
        flat = four
    return flat, note


def _build_tflite(model, mode, calibration_ids, keep_float_ops, max_layer_error, debug_ids, qat_model,
                  min_layer_agreement) -> tuple[bytes, dict]:
    note: dict = {}
    if mode == "qat":
        return qat.convert_qat(qat_model, model.input_shape[1]), note
    if mode in ("none", "float16", "dynamic"):
        return convert(model, mode), note
    if mode == "int4":
        return build_int4(model, debug_ids, min_layer_agreement)
    if mode == "int16x8":
        raise ExportError(INT16_ERROR)
    if calibration_ids is None or len(calibration_ids) == 0:
        raise ExportError("int8 needs calibration ids")
    calibrated = calibrate(model, calibration_ids)
    debug_ids = calibration_ids[:64] if debug_ids is None else debug_ids
    ops = []
    if keep_float_ops == "auto":
        full = quantize_calibrated(calibrated)
        ops, table = slow_int8_ops(full, convert(model), debug_ids)
        note["op_time_int8_vs_float_us"] = table.round(2).to_dict(orient="records")
    elif keep_float_ops:
        ops = list(keep_float_ops)
    errors = layer_errors(model, calibration_ids, debug_ids, ops)
    nodes = []
    if max_layer_error is not None:
        nodes = [n for n in errors.loc[errors["rmse/scale"] > max_layer_error, "tensor_name"] if isinstance(n, str)]
    if min_layer_agreement is not None:
        layers, agree = disagreeing_layers(model, calibrated, errors, debug_ids, min_layer_agreement)
        by_layer = layer_tensors(model, errors)
        nodes += [t for layer in layers for t in by_layer[layer] if t not in nodes]
        note.update(kept_float_layers=layers, int8_layer_agreement={k: round(v, 4) for k, v in agree.items()})
    flat = quantize_calibrated(calibrated, ops, nodes)
    cols = [c for c in ("op_name", "tensor_name", "scale", "rmse/scale", "max_abs_error") if c in errors]
    note.update(kept_float_ops=ops, kept_float_tensors=nodes,
                layer_errors_top=errors[cols].head(10).round(6).to_dict(orient="records"))
    return flat, note
