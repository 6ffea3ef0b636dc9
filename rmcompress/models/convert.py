"""A user's Keras model -> the same scorer as a tf_keras functional model, checked numerically.

Contract of :func:`from_keras`:

- input: a Keras 3 ``Sequential`` (started with ``keras.Input``) or functional model, or a tf_keras
  one. Its one input is token ids ``[batch, seq]`` (an integer dtype; a float input is accepted
  when only ``Embedding`` layers read it) and its one output a reward ``[batch, 1]`` or ``[batch]``
  (the latter gets a ``Reshape`` to ``[batch, 1]``).
- a Keras 3 model is rebuilt node by node: each layer of :data:`LAYERS` becomes the tf_keras layer
  of the same class, made from the same config (Keras 3 settings without a Keras 2 counterpart must
  hold their neutral value; initialisers, regularisers and constraints are dropped since the
  weights are copied), and called on the same inputs; a layer called twice stays one shared layer;
  nested Sequential/functional models are inlined. Keras 3 ops in a functional graph are rebuilt
  from :data:`OPS` (``x + y``, ``x - y``, ``x * y`` of two tensors; ``relu``, ``sigmoid``, ``tanh``,
  exact ``gelu``). Weights are copied after a shape check.
- check: both models score :data:`CHECK_BATCHES` batches of random ids (lengths vary, the rest is
  padding id 0, ids below the smallest input-reading ``Embedding``'s ``input_dim``); the largest
  difference must be ``<= TOLERANCE * max(1, max |reward|)``, else :class:`ModelError` names the
  first layer whose output differs.
- refused, with a one-line :class:`ModelError` naming the layer and its class: any layer or op not
  in the tables (``Lambda`` and custom layers included), a subclassed model (write it functionally),
  several inputs or outputs, inputs or outputs of the wrong shape.

A tf_keras model is checked against the same input/output contract and returned as it is (rebuilt
only to make a float input int32 or a ``[batch]`` output ``[batch, 1]``).
"""
from __future__ import annotations

import inspect

import numpy as np

from rmcompress._keras import keras, keras3, tf
from rmcompress.errors import ModelError

#: Keras 3 layer classes rebuilt as the tf_keras class of the same name
LAYERS = (
    "Embedding", "Dense", "EinsumDense", "Conv1D", "SeparableConv1D", "DepthwiseConv1D",
    "MultiHeadAttention", "LayerNormalization", "BatchNormalization",
    "Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "ActivityRegularization",
    "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax",
    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "AveragePooling1D", "MaxPooling1D",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "Reshape", "Flatten", "Permute", "RepeatVector",
    "LSTM", "GRU", "SimpleRNN", "Bidirectional",
)
#: Keras 3 op class (``keras.ops``) -> how to rebuild it: a tf_keras merge layer over two tensors,
#: or an activation applied to one
OPS = {"Add": ("merge", tf.math.add), "Subtract": ("merge", tf.math.subtract),
       "Multiply": ("merge", tf.math.multiply), "Relu": ("activation", tf.nn.relu),
       "Sigmoid": ("activation", tf.math.sigmoid), "Tanh": ("activation", tf.math.tanh),
       "Gelu": ("activation", lambda x: tf.nn.gelu(x, approximate=False))}
#: Keras 3 settings absent from tf_keras and the values under which leaving them out changes nothing
NEUTRAL = {"lora_rank": (None, 0), "lora_alpha": (None,), "quantization_config": (None,),
           "use_gate": (False,), "sliding_window": (None,), "flash_attention": (None, False),
           "rms_scaling": (False,), "synchronized": (False,), "use_cudnn": None, "seed": None,
           "gptq": (None, False), "build_config": None}
#: (layer class, Keras 3 setting) -> the tf_keras name of the same setting
RENAMED = {("LeakyReLU", "negative_slope"): "alpha"}
#: settings rebuilt from the weights or irrelevant to the forward pass
DROPPED_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
TOLERANCE = 1e-5
CHECK_BATCHES = 3
CHECK_BATCH_SIZE = 8
#: sequence length of the check when the model's input length is free and none is given
CHECK_SEQ_LEN = 16
DOC = "docs/python.md#bring-a-keras-3-model"


def _describe(layer) -> str:
    return f"{getattr(layer, 'name', '?')!r} ({type(layer).__name__})"


def _unsupported(layer) -> ModelError:
    cls = type(layer).__name__
    if cls == "Lambda":
        why = "a Lambda layer runs arbitrary Python code; write it with built-in layers"
    elif cls == "TFOpLambda":
        why = "a TensorFlow op; use a Keras layer or keras.ops add/subtract/multiply/relu"
    else:
        why = f"not a layer the converter knows (supported: {DOC})"
    return ModelError(f"layer {_describe(layer)} is not supported: {why}")


def _is_keras3_model(model) -> bool:
    try:
        return isinstance(model, keras3().Model)
    except ImportError:  # Keras 3 not installed: nothing can be a Keras 3 model
        return False


# -- configs ---------------------------------------------------------------------------------------
def _base_kwargs() -> set:
    return set(inspect.signature(keras.layers.Layer.__init__).parameters) | {
        "name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size", "input_dim"}


def _accepted(cls) -> set | None:
    """Keyword names ``cls(...)`` takes (None: anything, via ``**kwargs`` passed to a subclass)."""
    names = set()
    for klass in cls.__mro__:
        if klass is keras.layers.Layer:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return names
    if issubclass(cls, keras.layers.RNN):
        names.add("zero_output_for_mask")  # read from ``**kwargs`` by tf_keras's RNN
    return names | _base_kwargs()


def _dtype_name(value):
    if isinstance(value, dict):
        return (value.get("config") or {}).get("name", "float32")
    return getattr(value, "name", value)


def _tf_config(layer, cls) -> dict:
    """The Keras 3 config of ``layer`` in tf_keras terms (see the module docstring)."""
    cfg = dict(layer.get_config())
    out = {}
    accepted = _accepted(cls)
    for key, value in cfg.items():
        if key.endswith(DROPPED_SUFFIXES) or key == "activity_regularizer":
            continue
        if key == "dtype":
            value = _dtype_name(value)
        key = RENAMED.get((type(layer).__name__, key), key)
        if isinstance(value, dict) and "class_name" in value and key not in ("layer", "backward_layer"):
            raise ModelError(f"layer {_describe(layer)}: setting {key}={value['class_name']} is not a "
                             "built-in name; use a built-in (e.g. activation='relu')")
        if key in accepted:
            out[key] = value
            continue
        neutral = NEUTRAL.get(key, ())
        if key in NEUTRAL and (neutral is None or value in neutral):
            continue
        raise ModelError(f"layer {_describe(layer)}: setting {key}={value!r} has no tf_keras counterpart")
    return out


def _tf_layer(layer):
    """A fresh tf_keras layer equivalent to the Keras 3 ``layer`` (not built yet)."""
    k3 = keras3()
    cls_name = type(layer).__name__
    if cls_name not in LAYERS or type(layer) is not getattr(k3.layers, cls_name, None):
        raise _unsupported(layer)
    cls = getattr(keras.layers, cls_name)
    if cls_name == "Bidirectional":
        cfg = _tf_config(layer, cls)
        forward, backward = _tf_layer(layer.forward_layer), _tf_layer(layer.backward_layer)
        cfg.pop("layer", None)
        cfg.pop("backward_layer", None)
        return cls(forward, backward_layer=backward, **cfg)
    cfg = _tf_config(layer, cls)
    if cls_name == "MultiHeadAttention" and cfg.get("attention_axes") is not None:
        cfg["attention_axes"] = list(cfg["attention_axes"])
    try:
        return cls(**cfg)
    except (TypeError, ValueError) as e:
        raise ModelError(f"layer {_describe(layer)}: tf_keras refuses its config "
                         f"({str(e).splitlines()[0][:200]})") from None


def _tf_op(op):
    """A tf_keras layer for a Keras 3 op node (``x + y``, ``keras.ops.relu(x)`` ...)."""
    cls_name = type(op).__name__
    kind = OPS.get(cls_name) if type(op).__module__.startswith("keras.src.ops") else None
    if kind is None:
        raise ModelError(f"operation {_describe(op)} is not supported: only keras.ops add, subtract, "
                         f"multiply (of two tensors), relu, sigmoid, tanh and exact gelu ({DOC})")
    if cls_name == "Gelu" and getattr(op, "approximate", False):
        raise ModelError(f"operation {_describe(op)}: the tanh-approximate gelu has no tf_keras layer; "
                         "use gelu(x, approximate=False) or Activation('gelu')")
    fn = kind[1]
    # the TensorFlow op on tf_keras tensors (a ``TFOpLambda``), which, like the Keras 3 op, drops
    # the input's mask (a merge *layer* would pass it on to the next attention layer)
    return (lambda xs: fn(xs[0], xs[1])) if kind[0] == "merge" else fn


# -- graph -----------------------------------------------------------------------------------------
class _Rebuild:
    """Walks a Keras 3 graph and calls the matching tf_keras layers on tf_keras tensors."""

    def __init__(self):
        self.layers: dict[int, object] = {}   # id(Keras 3 layer) -> tf_keras layer (shared layers)
        self.pending: list = []               # (Keras 3 layer, tf_keras layer) awaiting weights
        self.names: set[str] = set()
        self.trace: list = []                 # (what, Keras 3 tensor, tf_keras tensor), top level only

    def _unique(self, name: str, scope: str) -> str:
        if name in self.names:
            name = f"{scope}_{name}"
        while name in self.names:
            name += "_"
        self.names.add(name)
        return name

    def _layer_for(self, op, scope: str):
        k3 = keras3()
        key = id(op)
        if key in self.layers:
            return self.layers[key]
        if isinstance(op, k3.layers.Layer):
            new = _tf_layer(op)
            self.pending.append((op, new))
        else:
            self.layers[key] = _tf_op(op)  # a function: tf_keras names the op layer itself
            return self.layers[key]
        new._name = self._unique(op.name, scope)
        self.layers[key] = new
        return new

    def run(self, model, inputs: list, top: bool) -> list:
        """``model``'s outputs (flat list of tf_keras tensors) for tf_keras ``inputs``."""
        k3 = keras3()
        graph = _functional(model)
        tensors = {id(kt): t for kt, t in zip(graph.inputs, inputs)}

        def get(value):
            if isinstance(value, k3.KerasTensor):
                if id(value) not in tensors:
                    raise ModelError(f"model {model.name!r}: a tensor {value.name!r} comes from outside "
                                     "its graph; rebuild the model from keras.Input")
                return tensors[id(value)]
            return value

        nodes = [node for depth in sorted(graph._nodes_by_depth, reverse=True)
                 for node in graph._nodes_by_depth[depth]]
        as_mask, as_value = set(), set()
        for node in nodes:
            if node.operation is None or node.is_input:
                continue
            for key, value in [(None, node.arguments.args)] + list(node.arguments.kwargs.items()):
                for v in k3.tree.flatten(value):
                    if isinstance(v, k3.KerasTensor):
                        (as_mask if key == "mask" else as_value).add(id(v))
        for node in nodes:
            op = node.operation
            if op is None or node.is_input:
                continue
            outputs = {id(kt) for kt in node.outputs}
            if not isinstance(op, k3.layers.Layer) and outputs <= as_mask and not outputs & as_value:
                continue  # an implicit mask's computation (``ids != 0``): tf_keras makes its own
            args = node.arguments.args
            # Keras 3 fills ``mask`` from the input's own mask: None (ops drop masks) must stay
            # None; a mask tensor outside the graph is the one tf_keras propagates by itself
            kwargs = {k: v for k, v in node.arguments.kwargs.items()
                      if not (k == "mask" and isinstance(v, k3.KerasTensor) and id(v) not in tensors)}
            if isinstance(op, k3.Model):  # a nested model: inlined
                flat = [get(v) for v in k3.tree.flatten((args, kwargs)) if isinstance(v, k3.KerasTensor)]
                outs = self.run(op, flat, top=False)
            else:
                if not isinstance(op, k3.layers.Layer):
                    consts = [v for v in args if not isinstance(v, k3.KerasTensor)]
                    if consts:
                        raise ModelError(f"operation {_describe(op)}: an operand is a constant "
                                         f"({consts[0]!r}); only tensor-tensor ops are supported")
                layer = self._layer_for(op, model.name)
                call_args = k3.tree.map_structure(get, args)
                call_kwargs = k3.tree.map_structure(get, kwargs)
                if not isinstance(op, k3.layers.Layer):  # merge layers take one list
                    outs = layer(list(call_args)) if len(call_args) > 1 else layer(call_args[0])
                else:
                    outs = layer(*call_args, **call_kwargs)
                outs = tf.nest.flatten(outs)
            for kt, t in zip(node.outputs, outs):
                tensors[id(kt)] = t
                if top:
                    self.trace.append((_describe(op), kt, t))
        return [get(kt) for kt in graph.outputs]

    def copy_weights(self) -> None:
        for src, dst in self.pending:
            values = src.get_weights()
            want = [tuple(w.shape) for w in dst.weights]
            have = [tuple(v.shape) for v in values]
            if want != have:
                raise ModelError(f"layer {_describe(src)}: weights {have} do not fit the tf_keras layer's "
                                 f"{want}")
            dst.set_weights(values)


def _functional(model, strict: bool = True):
    """The functional graph of a Keras 3 Sequential or functional model."""
    k3 = keras3()
    if isinstance(model, k3.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None and strict:
            raise ModelError(f"Sequential model {model.name!r} has no input shape; start it with "
                             "keras.Input(shape=(seq_len,), dtype='int32')")
        return graph
    functional = getattr(getattr(k3, "src", None), "models", None)
    functional = getattr(getattr(functional, "functional", None), "Functional", None)
    if functional is not None and isinstance(model, functional):
        return model
    if strict:
        raise ModelError(f"model {model.name!r} is a subclassed keras.Model ({type(model).__name__}); "
                         "only Sequential and functional models can be converted: write it with the "
                         "functional API (keras.Input -> layers -> keras.Model(inputs, outputs))")
    return None


# -- contract --------------------------------------------------------------------------------------
def _shape(t) -> tuple:
    return tuple(None if d is None else int(d) for d in t.shape)


def _is_int(dtype) -> bool:
    return tf.as_dtype(getattr(dtype, "name", dtype)).is_integer


def _input_readers(model, kt, k3: bool) -> list:
    """The layers (or ops) that read input tensor ``kt`` directly."""
    if k3:
        graph = _functional(model)
        out = []
        for depth in graph._nodes_by_depth.values():
            for node in depth:
                if node.operation is not None and any(x is kt for x in node.arguments.keras_tensors):
                    out.append(node.operation)
        return out
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
            and any(x is kt for node in layer._inbound_nodes for x in tf.nest.flatten(node.input_tensors))]


def _check_io(model, k3: bool) -> tuple:
    """``(input length or None, output rank)``; :class:`ModelError` when the contract is broken."""
    inputs, outputs = list(model.inputs or []), list(model.outputs or [])
    if len(inputs) != 1:
        raise ModelError(f"model {model.name!r} has {len(inputs)} inputs; a scorer takes one: token ids "
                         "[batch, seq]")
    if len(outputs) != 1:
        raise ModelError(f"model {model.name!r} has {len(outputs)} outputs; a scorer returns one reward "
                         "[batch, 1] or [batch]")
    kt, out = inputs[0], outputs[0]
    shape = _shape(kt)
    if len(shape) != 2:
        raise ModelError(f"model {model.name!r}: input {shape} is not token ids [batch, seq]")
    if not _is_int(kt.dtype):
        readers = _input_readers(model, kt, k3)
        if not readers or any(type(r).__name__ != "Embedding" for r in readers):
            raise ModelError(f"model {model.name!r}: input is {tf.as_dtype(kt.dtype).name} read by "
                             f"{', '.join(_describe(r) for r in readers) or 'nothing'}; needs integer token "
                             "ids (keras.Input(shape=(seq_len,), dtype='int32'))")
    out_shape = _shape(out)
    if not (len(out_shape) == 1 or (len(out_shape) == 2 and out_shape[1] == 1)):
        raise ModelError(f"model {model.name!r}: output {out_shape} is not a reward [batch, 1] or [batch]")
    return shape[1], len(out_shape)


def embedded_vocab_size(model) -> int | None:
    """Smallest ``input_dim`` of the ``Embedding`` layers that read a tf_keras model's input (the ids
    it can embed), or None when no Embedding reads it."""
    readers = _input_readers(model, model.inputs[0], False)
    dims = [int(r.input_dim) for r in readers if isinstance(r, keras.layers.Embedding)]
    return min(dims) if dims else None


# -- the check -------------------------------------------------------------------------------------
def check_ids(vocab: int, seq_len: int, rows: int, seed: int = 0) -> np.ndarray:
    """``rows`` random id rows of varied length (1..seq_len, ids 1..vocab-1), padded with 0."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, max(2, vocab), size=(rows, seq_len)).astype(np.int32)
    lengths = rng.randint(1, seq_len + 1, size=rows)
    lengths[0] = seq_len
    ids[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
    return ids


def _max_diff(a, b) -> tuple[float, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf"), 1.0
    if a.size == 0:
        return 0.0, 1.0
    return float(np.max(np.abs(a - b))), max(1.0, float(np.max(np.abs(a))))


def _first_difference(source, target, trace, ids) -> str | None:
    """The first traced layer whose outputs differ (None when that cannot be told)."""
    try:
        k3 = keras3()
        probe3 = k3.Model(source.inputs, [kt for _, kt, _ in trace])
        probe2 = keras.Model(target.inputs, [t for _, _, t in trace])
        got3 = probe3(ids, training=False)
        got2 = probe2(ids, training=False)
    except Exception:  # a probe model that cannot be built: report the output only
        return None
    for (what, _, _), a, b in zip(trace, got3, got2):
        diff, scale = _max_diff(a, b)
        if not diff <= TOLERANCE * scale:
            return f"{what} (max abs diff {diff:.3g})"
    return None


def check_same(source, target, seq_len: int | None, trace=(), seed: int = 0) -> float:
    """Max abs difference of the two models' rewards on random ids; :class:`ModelError` above the
    tolerance (module docstring)."""
    vocab = embedded_vocab_size(target) or 2
    length = seq_len or CHECK_SEQ_LEN
    worst = 0.0
    for b in range(CHECK_BATCHES):
        ids = check_ids(vocab, length, CHECK_BATCH_SIZE, seed=seed + b)
        a = np.asarray(source(ids, training=False)).reshape(-1)
        c = np.asarray(target(ids, training=False)).reshape(-1)
        diff, scale = _max_diff(a, c)
        if not diff <= TOLERANCE * scale:
            where = _first_difference(source, target, list(trace), ids) if trace else None
            raise ModelError(f"model {source.name!r}: the tf_keras rebuild differs from the Keras 3 model "
                             f"by {diff:.3g} (tolerance {TOLERANCE:g})"
                             + (f"; first at layer {where}" if where else ""))
        worst = max(worst, diff)
    return worst


# -- entry points ----------------------------------------------------------------------------------
def _tf_keras_model(model, seq_len: int | None):
    """Check a tf_keras model's contract; rebuild only for a float input or a ``[batch]`` output."""
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise ModelError(f"model {model.name!r} is a subclassed keras.Model ({type(model).__name__}); "
                         "write it with the functional API (keras.Input -> layers -> keras.Model)")
    for layer in model.layers:
        if type(layer).__name__ == "Lambda":
            raise _unsupported(layer)
    length, out_rank = _check_io(model, k3=False)
    if seq_len is not None and length is not None and seq_len != length:
        raise ModelError(f"model {model.name!r} takes {length} token ids per text, not {seq_len}")
    if _is_int(model.inputs[0].dtype) and out_rank == 2:
        return model
    ids = keras.Input(shape=(length or seq_len,), dtype="int32", name=model.inputs[0].name.split(":")[0])
    if _is_int(model.inputs[0].dtype):
        out = model(ids)
    else:
        clone = keras.models.clone_model(model, input_tensors=ids)
        clone.set_weights(model.get_weights())
        out = clone.outputs[0]
    if out_rank == 1:
        out = keras.layers.Reshape((1,), name="reward_2d")(out)
    return keras.Model(ids, out, name=model.name)


def from_keras(model, seq_len: int | None = None, check: bool = True):
    """``model`` (Keras 3 or tf_keras; see the module docstring) as a tf_keras scorer ids -> reward.

    ``seq_len`` fixes the input length of a model whose length is free (``None``); it must agree
    with a fixed one. ``check``: compare a Keras 3 model with its rebuild on random ids (the
    module docstring's check; leave it on unless the caller compares them itself)."""
    if isinstance(model, keras.Model):
        return _tf_keras_model(model, seq_len)
    if not _is_keras3_model(model):
        raise ModelError(f"{type(model).__name__} is not a Keras model")
    _functional(model)  # a subclassed model is refused before anything else is read
    length, out_rank = _check_io(model, k3=True)
    if seq_len is not None and length is not None and int(seq_len) != length:
        raise ModelError(f"model {model.name!r} takes {length} token ids per text, not {seq_len}")
    length = length if length is not None else seq_len
    rebuild = _Rebuild()
    name = _functional(model).inputs[0].name
    rebuild.names.add(name)
    ids = keras.Input(shape=(length,), dtype="int32", name=name)
    out = rebuild.run(model, [ids], top=True)[0]
    if out_rank == 1:
        out = keras.layers.Reshape((1,), name=rebuild._unique("reward_2d", model.name))(out)
    if not out.dtype.is_floating:
        raise ModelError(f"model {model.name!r}: output dtype {out.dtype.name} is not a float reward")
    converted = keras.Model(ids, out, name=model.name)
    rebuild.copy_weights()
    if check:
        check_same(model, converted, length, trace=rebuild.trace)
    return converted


__all__ = ["from_keras", "embedded_vocab_size", "check_same", "check_ids", "LAYERS", "OPS"]
