"""Keras scorer -> TFLite flatbuffer, and a thin LiteRT (ai-edge-litert) runner.

The TFLite model takes ``token_ids`` int32 ``[batch, seq_len]`` (batch dimension resizable) and
returns the reward ``[batch, 1]`` float32. ``quantize``:

- ``none``: float32;  ``float16``: float16 weights (dequantised at load);
- ``dynamic``: int8 weights, float activations (dynamic-range quantisation);
- ``int4``: the ``dynamic`` file with every fully-connected weight and embedding table in 4 bits
  (:mod:`rmcompress.runtime.int4`);
- ``int8``: int8 weights and activations calibrated on ``representative_ids`` (integer kernels; the
  int32 ids input and float reward output stay as they are);
- ``int16x8``: int16 activations, int8 weights (more precise activations than ``int8``).

Every converter traces the model through :func:`tflite_concrete_function`, which lets layers use
an export form of the same math while the graph is traced (``export_trace``: a one-head
self-attention drops its head split and merge ops); the parity checks compare the file with the
Keras model, so the form is verified like any other rewrite.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.errors import ExportError, ModelError
from rmcompress.runtime.int4 import to_int4

from rmcompress.config.choices import QUANTIZE_MODES


def serving_function(model: keras.Model, seq_len: int | None = None):
    """A ``tf.function`` over ``token_ids [None, seq_len]`` int32 returning the reward."""
    seq_len = seq_len if seq_len is not None else model.input_shape[1]

    @tf.function(input_signature=[tf.TensorSpec([None, seq_len], tf.int32, name="token_ids")])
    def score(token_ids):
        return {"reward": model(token_ids, training=False)}

    return score


def _attention_mask_for_tflite(layer):
    """Keras ``MultiHeadAttention``'s mask from its inputs' padding masks, built with ``expand_dims``
    instead of the boolean ``mask[:, None, :]`` strided slice that TFLite's built-in ops lack (the
    same values: ``[B, T, 1] & [B, 1, S]``)."""

    def compute(query, value, key=None, attention_mask=None, use_causal_mask=False):
        auto = None
        for t, axis in ((query, 2), (value, 1), (key, 1)):
            m = getattr(t, "_keras_mask", None)
            if m is None:
                continue
            m = tf.expand_dims(tf.cast(m, tf.bool), axis)
            auto = m if auto is None else tf.logical_and(auto, m)
        if use_causal_mask:
            causal = layer._compute_causal_mask(query, value)  # noqa: SLF001
            auto = causal if auto is None else tf.logical_and(auto, causal)
        if auto is not None:
            attention_mask = auto if attention_mask is None else tf.logical_and(tf.cast(attention_mask, tf.bool), auto)
        return attention_mask

    return compute


def _rnn_layers(model: keras.Model) -> list:
    return [m for m in model.submodules if isinstance(m, keras.layers.RNN)]


def tflite_concrete_function(model: keras.Model, seq_len: int | None = None):
    """The concrete serving function of ``model`` traced for a TFLite converter, with the export form
    of layers whose usual trace TFLite's built-in ops cannot run (the parity checks verify each):

    - layers with an ``export_trace`` attribute (``MultiHeadSelfAttention``) are traced with it set;
    - Keras ``MultiHeadAttention`` builds its padding mask with ``expand_dims``
      (:func:`_attention_mask_for_tflite`);
    - recurrent layers (LSTM, GRU, ``Bidirectional``) are traced unrolled over the fixed sequence
      length (a ``while`` loop over a tensor list does not convert); refused with a one-line
      :class:`ExportError` when the length is free or a padding mask reaches them (tf_keras computes
      masked steps differently when unrolled)."""
    length = seq_len if seq_len is not None else model.input_shape[1]
    for layer in [l for l in model.layers if isinstance(l, (keras.layers.RNN, keras.layers.Bidirectional))]:
        masked = any(getattr(n, "_keras_mask", None) is not None
                     for node in layer._inbound_nodes for n in tf.nest.flatten(node.input_tensors))  # noqa: SLF001
        if masked:
            raise ExportError(f"layer {layer.name!r} ({type(layer).__name__}) is recurrent and reads a padding "
                              "mask (mask_zero=True upstream): TFLite's built-in ops run it only unrolled, which "
                              "tf_keras computes differently for masked steps; drop mask_zero to export it")
        if length is None:
            raise ExportError(f"layer {layer.name!r} ({type(layer).__name__}) is recurrent: TFLite runs it "
                              "unrolled, which needs a fixed sequence length")
    layers = [m for m in model.submodules if hasattr(m, "export_trace")]
    attention = [m for m in model.submodules if type(m) is keras.layers.MultiHeadAttention]
    for layer in layers:
        layer.export_trace = True
    for layer in attention:
        layer._compute_attention_mask = _attention_mask_for_tflite(layer)  # noqa: SLF001
    unrolled = [(layer, layer.unroll, getattr(layer, "_could_use_gpu_kernel", None)) for layer in _rnn_layers(model)]
    for layer, _, _ in unrolled:
        layer.unroll = True
        if hasattr(layer, "_could_use_gpu_kernel"):
            layer._could_use_gpu_kernel = False  # noqa: SLF001  (the fused kernel is never unrolled)
    try:
        return serving_function(model, seq_len).get_concrete_function()
    finally:
        for layer in layers:
            layer.export_trace = False
        for layer in attention:
            del layer._compute_attention_mask  # noqa: SLF001
        for layer, was, kernel in unrolled:
            layer.unroll = was
            if kernel is not None:
                layer._could_use_gpu_kernel = kernel  # noqa: SLF001


def convert(model: keras.Model, quantize: str = "none", representative_ids: np.ndarray | None = None,
            seq_len: int | None = None) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer (see module docstring for ``quantize``)."""
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"quantize mode {quantize!r} unknown; allowed: {', '.join(QUANTIZE_MODES)}")
    if quantize == "int4":
        return to_int4(convert(model, "dynamic", seq_len=seq_len), convert(model, "none", seq_len=seq_len))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([tflite_concrete_function(model, seq_len)], model)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize in ("int8", "int16x8"):
        if representative_ids is None or len(representative_ids) == 0:
            raise ExportError(f"quantize={quantize} needs representative token ids for calibration")
        reps = np.asarray(representative_ids, np.int32)

        def representative() -> Iterable[list]:
            for row in reps:
                yield [row[np.newaxis, :]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        if quantize == "int16x8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as e:  # the converter raises ConverterError and others
        raise ExportError(f"TFLite conversion ({quantize}) failed: {str(e).splitlines()[0][:300]}") from None


def strip_tensor_names(flat: bytes) -> bytes:
    """``flat`` with every tensor and subgraph name and the model description removed: the debug
    strings an edge app never reads (about 75 bytes per tensor, ~9 kB of a 100 kB model). Unlike
    ``tensorflow.lite.tools.flatbuffer_utils.strip_strings`` the signature definitions stay, so the
    input is still ``token_ids`` and the output ``reward`` (their names live in the signature, not in
    the tensors). Weights, operators and quantisation parameters are untouched, so the outputs are
    bit-identical (the compress pipeline checks parity on the stripped file). Per-layer tools that
    match tensors by name (the quantisation debugger, op profiles) need the unstripped file."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flat))
    model.description = None
    for subgraph in model.subgraphs:
        subgraph.name = None
        for tensor in subgraph.tensors:
            tensor.name = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


class TFLiteRunner:
    """Runs a ``.tflite`` reward model with the LiteRT interpreter (what edge apps use)."""

    def __init__(self, model: bytes | str | os.PathLike, num_threads: int = 1):
        self._source = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
        self._num_threads = num_threads
        self.interpreter = self._new_interpreter()
        self._where = "model bytes" if isinstance(model, (bytes, bytearray)) else str(model)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self._where}: TFLite model has {len(inputs)} inputs/{len(outputs)} outputs; "
                             "expected 1/1")
        self._in, self._out = inputs[0], outputs[0]
        if len(self._in["shape"]) != 2 or self._in["dtype"] != np.int32:
            raise ModelError(f"{self._where}: TFLite input is {self._in['dtype'].__name__} "
                             f"{list(self._in['shape'])}; expected int32 token ids [batch, seq_len]")
        signature = self._in.get("shape_signature", self._in["shape"])
        #: True for a model exported with a dynamic sequence dimension (any length >= 1 is accepted)
        self.dynamic_length = len(signature) > 1 and int(signature[1]) == -1
        self.seq_len = int(self._in["shape"][1])
        self._batch = None
        self._length = self.seq_len
        if not self.dynamic_length:  # a dynamic length has no meaningful default to prepare at
            self._resize(1)  # a corrupt graph fails here, not in the middle of a measurement

    def _new_interpreter(self):
        from ai_edge_litert.interpreter import Interpreter

        try:
            if isinstance(self._source, bytes):
                return Interpreter(model_content=self._source, num_threads=self._num_threads)
            return Interpreter(model_path=self._source, num_threads=self._num_threads)
        except (ValueError, RuntimeError) as e:
            where = "model bytes" if isinstance(self._source, bytes) else self._source
            raise ModelError(f"{where}: not a loadable TFLite model ({str(e).splitlines()[0][:200]})") from None

    def _resize(self, batch: int, length: int | None = None) -> None:
        """Prepare the interpreter for ids ``[batch, length]``.

        A shape change after the first gets a fresh interpreter: LiteRT 2.21 with its default
        XNNPACK delegate gives wrong outputs for some int8 models when an interpreter that has run
        at batch 1 is resized to a larger batch (measured: max error 10 on the SST-2 `aggressive`
        model going from batch 1 to 256; ``tests/export/test_export.py`` keeps a regression check)."""
        length = self._length if length is None else int(length)
        if batch != self._batch or length != self._length:
            if self._batch is not None:
                self.interpreter = self._new_interpreter()
            try:
                self.interpreter.resize_tensor_input(self._in["index"], [batch, length], strict=False)
                self.interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as e:  # corrupt tensor indices, failed delegate prepare
                raise ModelError(f"{self._where}: TFLite model cannot be prepared "
                                 f"({str(e).splitlines()[0][:200]})") from None
            self._batch, self._length = batch, length

    def invoke(self, ids: np.ndarray) -> np.ndarray:
        """One call on a batch already resized (used by the latency timer)."""
        try:
            self.interpreter.set_tensor(self._in["index"], ids)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._out["index"])
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{self._where}: TFLite model failed to run ({str(e).splitlines()[0][:200]})") from None

    def score(self, ids: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Rewards ``[n]`` for ids ``[n, seq_len]``."""
        ids = np.asarray(ids, np.int32)
        if ids.ndim != 2 or (ids.shape[1] != self.seq_len and not self.dynamic_length):
            raise ModelError(f"TFLite model expects ids of shape [n, {self.seq_len}], got {ids.shape}")
        out = []
        for i in range(0, len(ids), batch_size):
            chunk = ids[i:i + batch_size]
            self._resize(len(chunk), chunk.shape[1])
            out.append(np.asarray(self.invoke(chunk)).reshape(-1))
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    def prepare_single(self, length: int | None = None) -> None:
        self._resize(1, length)
