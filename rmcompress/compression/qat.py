"""Quantisation-aware training (tfmot) that works on the whole reward transformer.

tfmot's ``quantize_model`` cannot take these models out of the box: its registry knows neither
self-attention, LayerNormalization nor Embedding (tensorflow/model-optimization issues 718, 942,
661), and its layout transform puts a FakeQuant on every model input -- here int32 token ids.
This module closes those holes with tfmot's own extension points:

- every layer is annotated with an explicit :class:`LayerQuantizeConfig`: which weights get an 8-bit
  weight quantizer (symmetric, per-tensor; the pruning- or cluster-preserving variants from
  ``tfmot...collab_opts`` after ``prune``/``cluster``: PQAT, CQAT, PCQAT) and whether the layer's
  output gets an 8-bit moving-average activation quantizer;
- :class:`QATSelfAttention` / :class:`QATFusedSelfAttention` fake-quantise the q/k/v projections,
  the raw scores ``q k^T`` and the context that enters the output projection (the
  attention-internal tensors that become int8 FULLY_CONNECTED / BATCH_MATMUL inputs and outputs in
  TFLite); the mask and the softmax stay float (an int8 softmax is not accelerated by XNNPACK, see
  ``docs/benchmarks.md``, "int8, op by op"); keys and values are quantised symmetrically so both int8 matmuls,
  ``q k^T`` and ``probabilities @ V``, are delegated to XNNPACK;
- :class:`RewardQuantizeScheme` is tfmot's default 8-bit scheme without ``InputLayerQuantize``:
  no FakeQuant on the int32 ids; ``PaddingMask`` (ids -> 0/1 mask) is never quantised, and
  embeddings quantise their table, not their integer input.

What stays float in the TFLite file: LayerNormalization's internal statistics (mean, variance,
rsqrt), the attention mask, scale and softmax, the padding mask, the masked pooling (and the output
of a LayerNormalization that only the pooling reads).
Everything with weights (embedding tables, all matmuls) is int8. In a user's model, layers tfmot's
wrapper cannot call (an op layer such as ``x + y``, Keras ``MultiHeadAttention`` called with a
separate ``value``) stay float; the converter puts (de)quantise ops around them.
"""
from __future__ import annotations

import inspect
import types

from rmcompress._keras import keras, tf
from rmcompress.compression.graph import Graph, layer_entry
from rmcompress.layers.compressed import FactorizedEmbedding, FusedQKVSelfAttention
from rmcompress.compression.settings import FuseSettings
from rmcompress.layers import encoder as L
from rmcompress.compression.fuse import fuse
from rmcompress.compression.targets import copy_model
from rmcompress.errors import ModelError, ExportError
from rmcompress.models.modeldir import custom_objects as model_objects
from rmcompress.runtime.tflite import tflite_concrete_function

QAT_PREFIX = "quant_"


def _tfmot():
    import tensorflow_model_optimization as tfmot

    return tfmot


def _quantizers():
    from tensorflow_model_optimization.python.core.quantization.keras import quantizers

    return quantizers


# -- attention with fake-quantised internals ------------------------------------------------------
class _QATAttentionMixin:
    """Fake-quantises q/k/v (after their projections), the raw scores ``q k^T`` (so the converter
    makes that matmul int8 too) and the context (before ``Wo``).

    Keys and values (``key``, ``value``; the fused ``qkv``) get a *symmetric* range (int8 zero point
    0): they are the right-hand operands of the int8 ``q k^T`` and ``probabilities @ V``
    BATCH_MATMULs, which XNNPACK runs only with a zero-point-0 right operand. With an asymmetric
    range the zero point lands on whatever the moving averages give (often -1 or 1) and the op falls
    back to the reference kernel, measured at 11.9 us of a 35 us model against 1.8 us delegated.
    An int8 ``q k^T`` instead of a float one (two DEQUANTIZE ops fewer) took the SST-2
    `aggressive` model from 23.6 to 22.5 us. The other points stay asymmetric."""

    _qat_points = ("query", "key", "value", "scores", "context")
    _symmetric_points = ("key", "value", "qkv")

    def _build_qat(self):
        q = _quantizers()
        self._act_quantizers = {p: q.MovingAverageQuantizer(num_bits=8, per_axis=False,
                                                            symmetric=p in self._symmetric_points,
                                                            narrow_range=False) for p in self._qat_points}
        self._act_vars = {p: self._act_quantizers[p].build(None, f"{p}_act", self) for p in self._qat_points}
        self._qat_training = False

    def _fq(self, x, point):
        from tensorflow_model_optimization.python.core.keras import utils

        v, quantizer = self._act_vars[point], self._act_quantizers[point]
        training = self._qat_training
        return utils.smart_cond(training, lambda: quantizer(x, True, v),
                                lambda: quantizer(x, False, v))

    def call(self, inputs, training=None):
        self._qat_training = False if training is None else training
        return super().call(inputs)

    def _project(self, x, kernel, bias):  # the output projection reads the fake-quantised context
        if kernel is self._output_kernel_ref():
            x = self._fq(x, "context")
        return tf.matmul(x, kernel) + bias  # one FULLY_CONNECTED in TFLite (no tensordot reshapes)

    def _output_kernel_ref(self):
        return self.output_kernel

    def _raw_scores(self, q, k):
        scores = super()._raw_scores(q, k)
        return self._fq(scores, "scores")


@L.register
class QATSelfAttention(_QATAttentionMixin, L.MultiHeadSelfAttention):
    """:class:`MultiHeadSelfAttention` for QAT (same weights plus the activation-range variables)."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_qat()

    def _qkv(self, x, batch, length):
        proj = [self._fq(self._project(x, k, b), p) for k, b, p in (
            (self.query_kernel, self.query_bias, "query"), (self.key_kernel, self.key_bias, "key"),
            (self.value_kernel, self.value_bias, "value"))]
        return tuple(self._split_heads(t, batch, length) for t in proj)


@L.register
class QATFusedSelfAttention(_QATAttentionMixin, FusedQKVSelfAttention):
    """:class:`FusedQKVSelfAttention` for QAT (the fused projection is fake-quantised once)."""

    _qat_points = ("qkv", "scores", "context")

    def build(self, input_shape):
        super().build(input_shape)
        self._build_qat()

    def _qkv(self, x, batch, length):
        qkv = self._fq(self._project(x, self.qkv_kernel, self.qkv_bias), "qkv")
        q, k, v = tf.split(qkv, 3, axis=-1)
        return (self._split_heads(q, batch, length), self._split_heads(k, batch, length),
                self._split_heads(v, batch, length))


QAT_ATTENTION = {"MultiHeadSelfAttention": QATSelfAttention, "FusedQKVSelfAttention": QATFusedSelfAttention}
QAT_LAYERS = {c.__name__: c for c in (QATSelfAttention, QATFusedSelfAttention)}


# -- quantize configs -----------------------------------------------------------------------------
def _quantize_config_base():
    return _tfmot().quantization.keras.QuantizeConfig


class LayerQuantizeConfig:  # subclassed from tfmot's QuantizeConfig at first use (lazy tfmot import)
    pass


def _make_config_class():
    base = _quantize_config_base()
    qz = _quantizers()

    class _LayerQuantizeConfig(base):
        """``weight_attrs`` get 8-bit weight quantizers (``preserve``: none | prune | cluster |
        prune_cluster); the layer output gets an 8-bit moving-average quantizer when ``quantize_output``."""

        def __init__(self, weight_attrs=(), quantize_output=True, preserve="none"):
            self.weight_attrs = list(weight_attrs)
            self.quantize_output = bool(quantize_output)
            self.preserve = preserve

        def _weight_quantizer(self):
            if self.preserve == "prune":
                from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve \
                    import prune_preserve_quantize_registry as pp

                return pp.PrunePreserveDefault8BitWeightsQuantizer()
            if self.preserve in ("cluster", "prune_cluster"):
                from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve \
                    import cluster_preserve_quantize_registry as cp

                return cp.ClusterPreserveDefault8BitWeightsQuantizer(self.preserve == "prune_cluster")
            return qz.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True, narrow_range=True)

        def get_weights_and_quantizers(self, layer):
            return [(getattr(layer, a), self._weight_quantizer()) for a in self.weight_attrs]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            for a, w in zip(self.weight_attrs, quantize_weights):
                setattr(layer, a, w)

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            if not self.quantize_output:
                return []
            return [qz.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {"weight_attrs": self.weight_attrs, "quantize_output": self.quantize_output,
                    "preserve": self.preserve}

    _LayerQuantizeConfig.__name__ = "LayerQuantizeConfig"
    return _LayerQuantizeConfig


_CONFIG_CLASS = None


def config_class():
    global _CONFIG_CLASS
    if _CONFIG_CLASS is None:
        _CONFIG_CLASS = _make_config_class()
    return _CONFIG_CLASS


def _integer_output(layer) -> bool:
    try:
        return tf.as_dtype(layer.output.dtype).is_integer
    except (AttributeError, ValueError):  # not called in a functional graph yet
        return False


def quantize_config_for(layer, preserve: str = "none"):
    """The :class:`LayerQuantizeConfig` for one layer of a reward model (module docstring);
    ``preserve`` picks the weight quantizer (none | prune | cluster | prune_cluster)."""
    C = config_class()
    if isinstance(layer, (L.PaddingMask, L.TokenRemap, keras.layers.Dropout)) or _integer_output(layer):
        return C([], quantize_output=False)  # ids, masks, remapped ids: never through a FakeQuant
    if isinstance(layer, keras.layers.Embedding):
        return C(["embeddings"], quantize_output=False, preserve=preserve)  # gather keeps the table's grid
    if isinstance(layer, FactorizedEmbedding):
        return C(["embeddings", "projection"] + (["full"] if layer.full_rows else []), quantize_output=True,
                 preserve=preserve)
    if isinstance(layer, FusedQKVSelfAttention):
        return C(["qkv_kernel", "output_kernel"], preserve=preserve)
    if isinstance(layer, L.MultiHeadSelfAttention):
        return C(["query_kernel", "key_kernel", "value_kernel", "output_kernel"], preserve=preserve)
    if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D)):
        return C(["kernel"], preserve=preserve)
    if isinstance(layer, L.PositionEmbedding):
        return C(["position_embeddings"], quantize_output=True, preserve=preserve)
    if isinstance(layer, keras.layers.LayerNormalization) and _feeds_only_pooling(layer):
        # its statistics run in float and so does the pooling that reads it: a FakeQuant here would
        # only add a QUANTIZE + DEQUANTIZE pair over [B, T, d] to the TFLite graph
        return C([], quantize_output=False)
    # LayerNormalization, Add, Concatenate, pooling, masking: quantise the output only
    return C([], quantize_output=True)


def _feeds_only_pooling(layer) -> bool:
    """Whether every layer reading ``layer``'s output is a masked pooling (float in TFLite)."""
    readers = [node.layer for node in getattr(layer, "_outbound_nodes", [])]
    return bool(readers) and all(isinstance(r, (L.MaskedMeanPooling, L.MaskedMaxPooling)) for r in readers)


def _scheme_class():
    tfmot = _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layout_transform
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_scheme, default_8bit_transforms)
    from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import model_transformer

    class NoInputQuantizeLayout(quantize_layout_transform.QuantizeLayoutTransform):
        """tfmot's default 8-bit layout transforms minus ``InputLayerQuantize`` (ids are int32)."""

        def apply(self, model, layer_quantize_map):
            transforms = [default_8bit_transforms.ConcatTransform6Inputs(),
                          default_8bit_transforms.ConcatTransform5Inputs(),
                          default_8bit_transforms.ConcatTransform4Inputs(),
                          default_8bit_transforms.ConcatTransform3Inputs(),
                          default_8bit_transforms.ConcatTransform(),
                          default_8bit_transforms.DenseBatchNormQuantize(),
                          default_8bit_transforms.LayerReLUQuantize()]
            return model_transformer.ModelTransformer(
                model, transforms, set(layer_quantize_map.keys()), layer_quantize_map).transform()

    class RewardQuantizeScheme(default_8bit_quantize_scheme.Default8BitQuantizeScheme):
        def get_layout_transformer(self):
            return NoInputQuantizeLayout()

    del tfmot
    return RewardQuantizeScheme


def custom_objects() -> dict:
    return {**model_objects(), **QAT_LAYERS, "LayerQuantizeConfig": config_class()}


def quantize_model(model: keras.Model, preserve: str = "none", preserve_layers=None) -> keras.Model:
    """The QAT model of ``model`` (a new model; weights copied; ``model`` untouched). ``preserve``
    applies to the layers named in ``preserve_layers`` (default: all); others get plain QAT."""

    tfmot = _tfmot()
    qk = tfmot.quantization.keras
    # Dense on [B, T, d] as one broadcast matmul (exact): with tensordot's reshape between matmul and
    # bias the converter cannot give the FULLY_CONNECTED an int8 output range and keeps it float.
    model, _ = fuse(model, None, FuseSettings(dropout=False, batchnorm=False, layernorm=False, qkv=False,
                                              dense_chain=False, matmul=True, positions=False))
    g = Graph(model)
    for e in g.entries:
        cls = QAT_ATTENTION.get(e["class_name"])
        if cls is not None:
            ent = layer_entry(cls, e["config"], e["name"])
            g.replace(e["name"], ent["class_name"], e["config"], ent["module"], ent["registered_name"])
    base = _rebuild_partial(model, g)

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer) or not _wrappable(layer):
            return layer
        keep = preserve if preserve_layers is None or layer.name in preserve_layers else "none"
        return qk.quantize_annotate_layer(layer, quantize_config_for(layer, keep))

    import warnings

    with qk.quantize_scope(custom_objects()), warnings.catch_warnings():
        # quantize_apply builds throw-away clones before loading weights; cluster-preserving
        # quantizers warn "too many centroids" for those. The returned model is checked instead.
        warnings.simplefilter("ignore", UserWarning)
        annotated = keras.models.clone_model(base, clone_function=annotate)
        return _passing_masks(qk.quantize_apply(annotated, scheme=_scheme_class()()))


def _passing_masks(model: keras.Model) -> keras.Model:
    """``model`` (a QAT model) with its quantize wrappers passing Keras masks like the layers they
    wrap: tfmot's ``QuantizeWrapperV2`` computes no mask, so after a wrapped
    ``Embedding(mask_zero=True)`` attention and pooling would see the padding as tokens. The
    wrappers are kept (their quantizers hold what they derived from the weights when built, e.g.
    the cluster-preserving centroids); each gets the mask methods below. Masks travel with the
    tensors at every call, so the graph needs no rebuilding."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import QuantizeWrapperV2

    for layer in model.layers:
        if isinstance(layer, QuantizeWrapperV2):
            layer.supports_masking = bool(getattr(layer.layer, "supports_masking", False))
            layer.compute_mask = types.MethodType(_wrapper_compute_mask, layer)
            layer.call = types.MethodType(_wrapper_call, layer)
    return model


def _wrapper_compute_mask(wrapper, inputs, mask=None):
    """A quantize wrapper's output mask: the wrapped layer's."""
    return wrapper.layer.compute_mask(inputs, mask)


def _wrapper_call(wrapper, inputs, training=None, mask=None, **kwargs):
    """tfmot's wrapper call, handing ``mask`` on only to a wrapped layer whose call takes one."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import QuantizeWrapperV2

    if mask is not None and "mask" in inspect.signature(wrapper.layer.call).parameters:
        kwargs["mask"] = mask
    return QuantizeWrapperV2.call(wrapper, inputs, training=training, **kwargs)


def _wrappable(layer) -> bool:
    """Whether tfmot's wrapper can call ``layer``: it passes one input, so a layer called with more
    tensors (``x + y``, Keras attention's ``value``) or an op layer (``TFOpLambda``) stays float."""
    if type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda"):
        return False
    for node in layer._inbound_nodes:  # noqa: SLF001
        extra = list(node.call_args[1:]) + list(node.call_kwargs.values())
        if any(hasattr(t, "_keras_history") for t in tf.nest.flatten(extra)):
            return False
    return True


def _rebuild_partial(model: keras.Model, g: Graph) -> keras.Model:
    """Rebuild ``g``; layers with extra (QAT range) variables get the old weights by name."""
    import copy

    cfg = copy.deepcopy(g.config)
    new = keras.Model.from_config(cfg, custom_objects={**model_objects(), **QAT_LAYERS})
    for layer in new.layers:
        old = model.get_layer(layer.name)
        copy_weights_by_name(old, layer)
    return new


def _relative(w, layer) -> str:
    """``w``'s name inside ``layer`` (``query/kernel`` of ``attn/query/kernel:0``; a quantize
    wrapper's inner layer's prefix is dropped too), so nested weights of one layer stay apart."""
    name = w.name.split(":")[0]
    for prefix in (layer.name, getattr(getattr(layer, "layer", None), "name", None)):
        if prefix and name.startswith(prefix + "/"):
            return name[len(prefix) + 1:]
    return name


def _weight_map(layer) -> dict:
    """``{name inside layer: weight}``; a name under an unexpected prefix is also reachable by
    its last part when that is unique in the layer."""
    out, last = {}, {}
    for w in layer.weights:
        rel = _relative(w, layer)
        out.setdefault(rel, w)
        last.setdefault(rel.split("/")[-1], []).append(w)
    for k, ws in last.items():
        if len(ws) == 1:
            out.setdefault(k, ws[0])
    return out


def copy_weights_by_name(src_layer, dst_layer) -> None:
    """Assign every weight of ``dst_layer`` that ``src_layer`` has under the same name inside the
    layer (:func:`_relative`) and shape."""
    src = _weight_map(src_layer)
    for w in dst_layer.weights:
        v = src.get(_relative(w, dst_layer))
        if v is not None and tuple(v.shape) == tuple(w.shape):
            w.assign(v)


def float_model_from_qat(qat_model: keras.Model, float_model: keras.Model) -> keras.Model:
    """A plain copy of ``float_model`` carrying the QAT-trained float weights of ``qat_model``."""

    out = copy_model(float_model)
    # A QuantizeWrapper's quantized weights are attributes of the inner layer replaced by tensors, so
    # the inner layer no longer lists those variables: the wrapper does (with its quantizer ranges).
    wrappers = {getattr(layer, "layer", layer).name: layer for layer in qat_model.layers}
    for layer in out.layers:
        if layer.name in wrappers and layer.weights:
            copy_weights_by_name(wrappers[layer.name], layer)
            missing = {_relative(w, layer) for w in layer.weights} - set(_weight_map(wrappers[layer.name]))
            if missing:
                raise ModelError(f"QAT model lacks weights {sorted(missing)} of layer {layer.name!r}")
    return out


def convert_qat(qat_model: keras.Model, seq_len: int | None = None) -> bytes:
    """TFLite int8 flatbuffer of a QAT model (ranges from its FakeQuant ops; no calibration)."""

    conv = tf.lite.TFLiteConverter.from_concrete_functions([tflite_concrete_function(qat_model, seq_len)], qat_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return conv.convert()
    except Exception as e:
        raise ExportError(f"TFLite conversion of the QAT model failed: {str(e).splitlines()[0][:300]}") from None
