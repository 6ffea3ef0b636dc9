"""The channel dependency graph of any functional or Sequential tf_keras model, and the prunable
groups it yields (what Torch-Pruning's DepGraph does for PyTorch, here for Keras).

The last axis of every float tensor has a *layout*: a sequence of segments, each one *channel
space* (channels that always appear together). Walking the layers in graph order:

======================================  ============================================================
layer                                   what it does to the layouts
======================================  ============================================================
Embedding, Dense, Conv1D                *produce* a fresh space (width / units / filters); Dense
                                        and Conv1D also *consume* their input layout through the
                                        rows of their kernel
channel-wise: Dropout, activations,     output layout = input layout; per-channel weights
BatchNormalization, pooling over time,  (BatchNormalization's) belong to the space
``tf.nn.relu(x)``, ``x * 2.0``,
``x[:, 0]``
Add, Subtract, Multiply, Average,       *couple* their inputs: the spaces, segment by segment,
Maximum, Minimum, ``x + y``, ``x * y``  become one (a removed channel goes from every member)
Concatenate (last axis)                 output layout = the inputs' segments in order
attention: rmcompress's                 its heads are a group of their own (``<layer>_heads``);
MultiHeadSelfAttention, Keras'          it consumes its input layout through the rows of the
MultiHeadAttention called as            query/key/value kernels and produces a fresh space (the
self-attention                          output projection's columns)
LayerNormalization (last axis)          output layout = input layout; it *normalises* the spaces
Keras' MultiHeadAttention (cross)       its heads are a group; its input and output widths are
                                        *pinned*
recurrent layers, reshapes, Softmax,    *pin* the spaces they read (kept whole; the reason is
EinsumDense, separable convolutions,    recorded) and produce pinned spaces
the outputs
======================================  ============================================================

Every space that is not pinned is a *group*, named after its first producer. Removing a unit of a
group is exact: the only layers that mix channels and read the space are its consumers (Dense and
Conv1D kernel rows), so gating the channels at the consumers' inputs (:mod:`rmcompress.structured.gating`)
and dropping them from every member (:mod:`rmcompress.structured.shrink`) compute the same function.

A group that a LayerNormalization normalises or an attention layer reads is a *stream* group (a
transformer's residual width: the embedding, every branch's output projection, every norm and the
reward head's input share it, CoFi's hidden dimension). It is gated where it is *written*
(``writers``: each producer's output, each norm's output and the position table, through the
gate, so a closed channel is exactly zero wherever it is read; its consumers read it ungated) and
a norm computes its statistics over the open channels only (``GatedLayerNormalization``): the
shrunk model's norm over the kept channels computes the same thing, but removing a channel changes
the others' statistics, so the group is trained through, never cut blind. A layer that can make a
zero channel non-zero (BatchNormalization, ``x + 1``, a sigmoid, an add of a broadcast operand, a
positive max-pooling floor) pins a would-be stream group, with the reason.
Every group keeps at least one unit, but for a residual branch that can go whole
(:class:`BranchRemoval`): an attention layer's heads, or the units of a feed-forward pair
``Dense(f, act) -> Dense(d)`` no other layer reads, whose output reaches the model only through one
residual add. With no unit left the branch adds a constant (its output bias), which folds into the
layer that made the residual; the branch, a normalisation feeding only it and the add then go, and
the registry counts them with the group's presence factor. An attention branch and the
feed-forward branch right after it on the residual stream make a *block*: a one-unit group
(``<attention layer>_block``) whose closed gate closes both branches' units (every layer of both
carries its presence factor too). The rows of the embedding that reads the token ids are the
``vocab`` group (row 0, padding, stays) when the model masks padding by id (a ``PaddingMask`` on
the same ids): a removed token then reads the shared all-zero row 0 through a ``TokenRemap``.

Every model goes this way, rmcompress's shipped architectures too: their groups are
``block{i}_attn_heads`` (heads), ``block{i}_ffn_in`` (feed-forward units), ``block{i}_attn_block``
(the whole block), ``conv{k}`` (filters), ``token_embedding`` (embedding columns: the cnn's and the
bow's, and the transformer's and bert's residual width, a stream group), ``hidden`` (the reward
head's hidden units) and ``vocab``.

A layer the complexity registry does not know is an error naming the layer and its class; a
subclassed model is refused with a pointer to the functional API.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rmcompress._keras import SlicingOpLambda, TFOpLambda, keras, tf
from rmcompress.cost.registry import Dim, facts_for, keras_mha_is_self, tfop_kind
from rmcompress.errors import ModelError
from rmcompress.layers import encoder as L
from rmcompress.layers import gates as G

K = keras.layers
#: layers whose output keeps the input's channels one for one
CHANNELWISE = (K.Dropout, K.SpatialDropout1D, K.GaussianNoise, K.GaussianDropout, K.ActivityRegularization,
               K.Masking, K.BatchNormalization, K.ReLU, K.LeakyReLU, K.ELU, K.GlobalAveragePooling1D,
               K.GlobalMaxPooling1D, K.AveragePooling1D, K.MaxPooling1D, L.ApplyMask, L.MaskedMeanPooling,
               L.MaskedMaxPooling, L.PositionEmbedding)
MERGES = (K.Add, K.Subtract, K.Multiply, K.Average, K.Maximum, K.Minimum)
#: attention layers whose heads are a group
_MHA = (K.MultiHeadAttention, L.MultiHeadSelfAttention)
#: layers with a prunable output (and, but for Embedding, a prunable input)
PRODUCERS = (K.Dense, K.Conv1D, K.Embedding)
_NO_CHANNELS = (K.InputLayer, L.PaddingMask)


def _num_heads(layer) -> int:
    """Heads of an attention layer."""
    if isinstance(layer, L.MultiHeadSelfAttention):
        return int(layer.num_heads)
    return int(layer._num_heads)


def _output_bias(layer) -> str | None:
    """The weight attribute (for :func:`rmcompress.cost.registry.weight_of`) of an attention
    layer's output bias; None without one."""
    if isinstance(layer, L.MultiHeadSelfAttention):
        return "output_bias"
    return "_output_dense.bias" if layer._use_bias else None


def _pin_reason(layer) -> str:
    kind = type(layer).__name__
    if isinstance(layer, K.LayerNormalization):
        return "LayerNormalization normalises over the whole width"
    if isinstance(layer, (K.RNN, K.Bidirectional)):
        return f"{kind} is counted, not pruned"
    if isinstance(layer, _MHA):
        return "attention input and output widths are kept (its heads are pruned)"
    if isinstance(layer, (K.Reshape, K.Flatten, K.Permute, K.RepeatVector)):
        return f"{kind} reshapes the channel axis"
    return f"{kind} mixes channels in a way shrinking cannot slice"


class _Spaces:
    """Union-find over channel spaces; a root carries the size, the producers and the pin reasons."""

    def __init__(self):
        self.parent: list[int] = []
        self.size: list[int] = []
        self.producers: dict = {}   # root -> [layer name]
        self.pins: dict = {}        # root -> [reason]

    def new(self, size: int, producer: str | None = None, pin: str | None = None) -> int:
        i = len(self.parent)
        self.parent.append(i)
        self.size.append(int(size))
        self.producers[i] = [producer] if producer else []
        self.pins[i] = [pin] if pin else []
        return i

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.size[a] != self.size[b]:
            raise ModelError(f"channel spaces of {self.size[a]} and {self.size[b]} channels are coupled")
        self.parent[b] = a
        self.producers[a] += self.producers.pop(b)
        self.pins[a] += self.pins.pop(b)

    def pin(self, i: int, reason: str) -> None:
        self.pins[self.find(i)].append(reason)

    def pinned(self, i: int) -> bool:
        return bool(self.pins[self.find(i)])


def graph_nodes(model) -> list:
    """The call nodes of a functional/Sequential tf_keras model in execution order (inputs first).

    Raises :class:`ModelError` for a subclassed model, a Sequential without an input shape and a
    nested model (each with what to do instead)."""
    if not getattr(model, "_is_graph_network", False) or not model.inputs:
        if isinstance(model, keras.Sequential):
            raise ModelError(f"Sequential model {model.name!r} has no input shape; start it with "
                             "keras.Input(shape=(seq_len,), dtype='int32')")
        raise ModelError(f"model {model.name!r} is a subclassed keras.Model ({type(model).__name__}); "
                         "only Sequential and functional models can be read: write it with the functional "
                         "API (keras.Input -> layers -> keras.Model(inputs, outputs))")
    nodes = [node for depth in sorted(model._nodes_by_depth, reverse=True) for node in model._nodes_by_depth[depth]]
    for node in nodes:
        if isinstance(node.layer, keras.Model):
            raise ModelError(f"layer {node.layer.name!r} of model {model.name!r} is a nested model; build the "
                             "reward model as one flat functional graph (call the inner layers directly)")
    return nodes


def keras_inputs(node) -> list:
    """The Keras tensors a node's call reads, in argument order."""
    return list(node.keras_inputs)


def _last(t) -> int | None:
    shape = t.shape
    return int(shape[-1]) if shape.rank and shape[-1] is not None else None


@dataclass
class _Walk:
    spaces: _Spaces = field(default_factory=_Spaces)
    layouts: dict = field(default_factory=dict)     # id(KerasTensor) -> tuple of space ids | None
    roles: dict = field(default_factory=dict)       # layer name -> {role: layout}
    produced: dict = field(default_factory=dict)    # layer name -> space id
    heads: dict = field(default_factory=dict)       # attention layer name -> heads
    order: list = field(default_factory=list)       # layer names in graph order
    reads_whole: list = field(default_factory=list)  # layouts a norm or an attention layer reads
    writers: dict = field(default_factory=dict)     # layer name -> the role its output writes
    nonzero: list = field(default_factory=list)     # (layer name, layout, why it can write a zero channel)

    def layout(self, t):
        return self.layouts.get(id(t))

    def pin_layout(self, layout, reason):
        for s in layout or ():
            self.spaces.pin(s, reason)

    def opaque(self, t, reason):
        n = _last(t)
        return None if n is None or not t.dtype.is_floating else (self.spaces.new(n, pin=reason),)

    def couple(self, layouts, where: str):
        layouts = [x for x in layouts if x]
        if not layouts:
            return None
        first = layouts[0]
        for other in layouts[1:]:
            sizes_a = [self.spaces.size[self.spaces.find(s)] for s in first]
            sizes_b = [self.spaces.size[self.spaces.find(s)] for s in other]
            if sizes_a == sizes_b:
                for a, b in zip(first, other):
                    self.spaces.union(a, b)
            else:  # differently concatenated tensors meet: keep all of them whole
                reason = f"{where} merges differently concatenated tensors"
                self.pin_layout(first, reason)
                self.pin_layout(other, reason)
        return first

    def role(self, layer, role, layout):
        if layout is None:
            return
        have = self.roles.setdefault(layer.name, {})
        if role in have:  # a shared layer: its calls read one space
            self.couple([have[role], layout], f"layer {layer.name!r}")
        else:
            have[role] = layout


def _channelwise_slice(node) -> bool:
    """``x[...]`` keeps the channel axis when its last index is the full slice (or absent)."""
    spec = node.call_args[1] if len(node.call_args) > 1 else None
    if not isinstance(spec, tuple):
        spec = (spec,)
    if any(s is Ellipsis for s in spec):
        return spec[-1] is Ellipsis or spec[-1] == slice(None)
    rank = node.keras_inputs[0].shape.rank
    return len(spec) < rank or spec[-1] == slice(None)


def _is_producer(layer) -> bool:
    if isinstance(layer, (K.Embedding, K.Dense)):
        return True
    return (type(layer) in (K.Conv1D, G.InputGatedConv1D) and int(getattr(layer, "groups", 1)) == 1
            and layer.data_format == "channels_last")


def _visit(w: _Walk, node) -> list:
    """The layouts of ``node``'s outputs (recording roles, productions, couplings and pins)."""
    layer = node.layer
    outs = tf.nest.flatten(node.outputs)
    ins = keras_inputs(node)
    if isinstance(layer, (G.RowGate, G.WidthGate)):  # x * g[ids], x * z: the channels of x
        return [w.layout(ins[0])]
    if isinstance(layer, G.GATE_LAYERS):
        return [None] * len(outs)
    facts = facts_for(layer)  # unknown layers: one error naming the layer and its class
    if isinstance(layer, _NO_CHANNELS) or isinstance(layer, getattr(L, "TokenRemap", ())):
        return [None if not t.dtype.is_floating else w.opaque(t, "model input") for t in outs]
    x = ins[0] if ins else None
    x_layout = w.layout(x) if x is not None else None
    if isinstance(layer, K.LayerNormalization) and _last_axis(layer):
        w.role(layer, "width", x_layout)
        w.reads_whole.append(x_layout)
        w.writers[layer.name] = "width"
        if not layer.scale:  # its gates fold into gamma
            _note_nonzero(w, layer, x_layout, "it has no scale (gamma) to take its gates")
        return [x_layout]
    if isinstance(layer, L.MultiHeadSelfAttention) or (isinstance(layer, K.MultiHeadAttention) and
                                                        keras_mha_is_self(layer)):
        if isinstance(layer, K.MultiHeadAttention):  # query = value = key: x; an attention mask is read whole
            for t in ins[1:]:
                if t is not x:
                    w.pin_layout(w.layout(t), f"layer {layer.name!r}: an attention mask")
        w.role(layer, "width", x_layout)
        w.reads_whole.append(x_layout)
        w.heads[layer.name] = _num_heads(layer)
        if layer.name not in w.produced:
            w.produced[layer.name] = w.spaces.new(facts.roles(layer)["out"], producer=layer.name)
        space = w.produced[layer.name]
        w.role(layer, "out", (space,))
        w.writers[layer.name] = "out"
        return [(space,)]
    if isinstance(layer, _MHA):
        for t in ins:
            w.pin_layout(w.layout(t), f"layer {layer.name!r}: {_pin_reason(layer)}")
        w.heads[layer.name] = _num_heads(layer)
        return [w.opaque(t, f"layer {layer.name!r}: {_pin_reason(layer)}") for t in outs]
    if _is_producer(layer):
        if not isinstance(layer, K.Embedding):
            w.role(layer, "in", x_layout)
        if layer.name not in w.produced:
            role = "width" if isinstance(layer, K.Embedding) else "out"
            w.produced[layer.name] = w.spaces.new(facts.roles(layer)[role], producer=layer.name)
        space = w.produced[layer.name]
        w.role(layer, "width" if isinstance(layer, K.Embedding) else "out", (space,))
        w.writers[layer.name] = "width" if isinstance(layer, K.Embedding) else "out"
        return [(space,)]
    if isinstance(layer, CHANNELWISE) or (isinstance(layer, K.Activation) and
                                          getattr(layer.activation, "__name__", "") != "softmax"):
        if isinstance(layer, K.BatchNormalization) and facts.roles(layer).get("width") is None:
            w.pin_layout(x_layout, f"layer {layer.name!r}: the registry has no width role for it")
        w.role(layer, "width", x_layout)
        if isinstance(layer, L.PositionEmbedding):
            w.writers[layer.name] = "width"
        else:
            _note_nonzero(w, layer, x_layout, _makes_nonzero(layer))
        return [x_layout for _ in outs]
    if isinstance(layer, MERGES):
        return [_merge(w, layer, ins, outs[0])]
    if isinstance(layer, K.Concatenate):
        rank = outs[0].shape.rank
        if layer.axis in (-1, rank - 1):
            layouts = [w.layout(t) for t in ins]
            if all(layouts):
                out = tuple(s for lay in layouts for s in lay)
                w.role(layer, "width", out)
                return [out]
            for lay in layouts:
                w.pin_layout(lay, f"layer {layer.name!r}: concatenates a tensor without channels")
            return [w.opaque(outs[0], f"layer {layer.name!r}: concatenation of pinned tensors")]
        return [_merge(w, layer, ins, outs[0])]
    if isinstance(layer, TFOpLambda):
        if isinstance(layer, SlicingOpLambda):
            if _channelwise_slice(node):
                return [x_layout]
        else:
            kind = tfop_kind(layer)
            if kind == "elementwise" and len(ins) > 1:
                return [_merge(w, layer, ins, outs[0])]
            if kind in ("elementwise", "activation", "reduce_time"):
                w.role(layer, "width", x_layout)
                _note_nonzero(w, layer, x_layout, _tfop_makes_nonzero(layer, kind))
                return [x_layout]
            if getattr(layer, "symbol", None) == "identity":
                return [x_layout]
    # everything else the registry counts: pin what it reads, produce pinned spaces
    reason = f"layer {layer.name!r}: {_pin_reason(layer)}"
    for t in ins:
        w.pin_layout(w.layout(t), reason)
    return [w.opaque(t, reason) for t in outs]


def _merge(w: _Walk, layer, ins, out):
    """Couple the inputs of an elementwise merge (broadcast operands of width 1 take no part)."""
    width = _last(out)
    parts = [w.layout(t) for t in ins if _last(t) == width and t.shape.rank == out.shape.rank]
    layout = w.couple(parts, f"layer {layer.name!r}")
    for t in ins:  # a broadcast operand (a mask, a per-position scale) is read whole
        if not (_last(t) == width and t.shape.rank == out.shape.rank):
            w.pin_layout(w.layout(t), f"layer {layer.name!r}: broadcast into another tensor")
            if not _multiplies(layer):
                _note_nonzero(w, layer, layout, "it adds a broadcast operand to every channel")
    w.role(layer, "width", layout)
    return layout


def _last_axis(layer) -> bool:
    """A LayerNormalization over the last axis only."""
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    shape = layer.input_shape[0] if isinstance(layer.input_shape, list) else layer.input_shape
    return len(axes) == 1 and axes[0] in (-1, len(shape) - 1)


def _multiplies(layer) -> bool:
    """An elementwise merge that keeps a zero operand zero whatever the others are."""
    return isinstance(layer, K.Multiply) or getattr(layer, "symbol", None) in (
        "math.multiply", "math.truediv", "math.divide")


#: activations whose value at 0 is not 0
_NONZERO_AT_ZERO = ("sigmoid", "softplus", "exponential", "hard_sigmoid")


def _makes_nonzero(layer) -> str | None:
    """Why a channel-wise layer can turn a zero channel non-zero (None: it cannot)."""
    if isinstance(layer, K.BatchNormalization):
        return "BatchNormalization shifts every channel"
    if isinstance(layer, L.MaskedMaxPooling) and layer.floor > 0:
        return "its padding floor is positive"
    if isinstance(layer, (K.Activation, K.ReLU, K.LeakyReLU, K.ELU)):
        value = float(tf.reshape(layer.call(tf.zeros([1, 1])), [-1])[0])
        return None if value == 0.0 else f"its activation is {value:g} at 0"
    return None


def _tfop_makes_nonzero(layer, kind: str) -> str | None:
    """:func:`_makes_nonzero` for a one-tensor TF op (``x + c``, ``tf.sigmoid(x)``, ``x * c``)."""
    symbol = getattr(layer, "symbol", "")
    if kind == "activation" and any(a in symbol for a in _NONZERO_AT_ZERO):
        return f"{symbol} is not 0 at 0"
    if kind == "elementwise" and symbol not in ("math.multiply", "math.truediv", "math.divide", "math.square",
                                                "math.negative", "math.scalar_mul", "compat.v1.math.scalar_mul"):
        return f"{symbol} with a constant can make a zero channel non-zero"
    return None


def _note_nonzero(w: _Walk, layer, layout, reason: str | None) -> None:
    if reason is not None and layout:
        w.nonzero.append((layer.name, layout, reason))


#: the group of an embedding's vocabulary rows (row 0, padding, stays)
VOCAB = "vocab"


@dataclass
class Structure:
    """The prunable groups of a model found in its layer graph: ``groups`` (name -> units), the role
    wiring of every layer (``dims``: layer -> {role: Dim}), the layers that go with a group
    (``present``: layer -> Dim of presence factors), the units each group must keep
    (``min_alive``), each attention layer's heads group (``head_groups``) and why each kept width is
    kept (``pinned``: one line per reason)."""

    groups: dict
    dims: dict = field(default_factory=dict)
    present: dict = field(default_factory=dict)
    min_alive: dict = field(default_factory=dict)
    head_groups: dict = field(default_factory=dict)
    pinned: list = field(default_factory=list)
    #: attention layer or feed-forward group -> :class:`BranchRemoval` (how the branch goes when
    #: every unit of its group does)
    removals: dict = field(default_factory=dict)
    #: block group (one unit) -> the groups of its branches (an attention branch and the
    #: feed-forward branch that follows it); a closed block gate closes every unit of them
    blocks: dict = field(default_factory=dict)
    #: the embedding whose vocabulary rows are the ``vocab`` group (None: no such group)
    vocab_embedding: str | None = None
    #: the stream groups (normalised or read by attention: gated where they are written)
    streams: tuple = ()
    #: layer -> the role through which it writes a stream group (its output is gated there)
    writers: dict = field(default_factory=dict)

    def full_alive(self) -> dict:
        return dict(self.groups)

    def default_gate_groups(self, vocab: bool = False, width: bool = False) -> list:
        """Every group (the vocabulary rows only when ``vocab``, the stream groups only when
        ``width``: a normalised width changes the other channels' statistics when one goes, so it is
        pruned only where training or fine-tuning follows and asks for it)."""
        return [g for g in self.groups if (vocab or g != VOCAB) and (width or g not in self.streams)]

    def input_gates(self, layer_name: str) -> Dim | None:
        """The Dim of a consumer's input (Dense/Conv1D ``in``) when some of it is a group that is
        gated where it is read (not a stream group)."""
        dim = self.dims.get(layer_name, {}).get("in")
        return dim if dim is not None and any(isinstance(s, str) and s not in self.streams
                                              for s in dim.segments) else None

    def output_gates(self, layer_name: str) -> Dim | None:
        """The Dim of what a writer of a stream group writes (None: ``layer_name`` writes none)."""
        role = self.writers.get(layer_name)
        return None if role is None else self.dims[layer_name][role]


@dataclass(frozen=True)
class BranchRemoval:
    """A residual branch that may lose every unit of its group ``group``: an attention layer (its
    heads) or a feed-forward pair ``Dense(f, act) -> Dense(d)`` (the first one's units). Its output
    reaches the model only through one residual add ``x + branch(...)`` (``add``, through dropout at
    most), so with no unit left the branch is the constant ``b`` (``bias``: the output projection's
    bias as ``(layer, weight)``, None without one) and the add is ``x + b``; ``b`` folds into
    ``target.attr``, the last layer to add into ``x`` (a LayerNormalization's ``beta``, a linear
    Dense/Conv1D's ``bias``, an attention layer's output bias, the embedding or position rows), through nothing
    but adds and dropout that feed only this add. ``removed``: the layers that go with it (the
    branch, a normalisation feeding only it, the dropout after it, the add)."""

    group: str
    add: str
    target: str | None
    attr: str | None
    bias: tuple | None
    removed: tuple


_ADD_SYMBOLS = ("__operators__.add", "math.add")
#: layers a feed-forward branch may pass through between its two Dense layers and after the second
_BRANCH_CHANNELWISE = (K.Dropout, K.Activation, K.ReLU, K.LeakyReLU, K.ELU)
_DENSE = (K.Dense, G.InputGatedDense)


def _consumers(t) -> list:
    """The layers whose calls read Keras tensor ``t``."""
    layer = t._keras_history.layer
    return [node.layer for node in layer._outbound_nodes
            if any(x is t for x in tf.nest.flatten(node.keras_inputs))]


def _producer(t):
    return t._keras_history.layer


def _single_node(layer):
    return layer._inbound_nodes[0] if len(layer._inbound_nodes) == 1 else None


def _output(layer):
    """The one output tensor of a layer called once (None otherwise)."""
    node = _single_node(layer)
    if node is None or isinstance(node.outputs, (list, tuple)):
        return None
    return node.outputs


def _is_add(layer, node) -> bool:
    if isinstance(layer, K.Add):
        return len(node.keras_inputs) == 2
    return (isinstance(layer, TFOpLambda) and getattr(layer, "symbol", None) in _ADD_SYMBOLS
            and len(node.keras_inputs) == 2)


def _is_identity(layer) -> bool:
    """``tf.identity(x)`` (what a shrunk model has where an add that dropped a Keras mask went)."""
    return isinstance(layer, TFOpLambda) and getattr(layer, "symbol", None) == "identity"


def _linear(layer) -> bool:
    return getattr(layer.activation, "__name__", "") == "linear"


def _fold_target(t, allowed: set):
    """(layer, weight attr) a constant added to ``t`` folds into, walking back through adds and
    dropout whose outputs feed only ``allowed`` layers; None when there is none."""
    layer = _producer(t)
    if len(layer._inbound_nodes) != 1 or not {c.name for c in _consumers(t)} <= allowed:
        return None
    node = layer._inbound_nodes[0]
    if isinstance(layer, K.LayerNormalization) and layer.center:
        return layer, "beta"
    if type(layer) in (K.Dense, K.Conv1D, G.InputGatedDense, G.InputGatedConv1D) and layer.use_bias and \
            _linear(layer):
        return layer, "bias"
    if isinstance(layer, _MHA) and _output_bias(layer) is not None:
        return layer, _output_bias(layer)
    if type(layer) is K.Embedding:
        return layer, "embeddings"
    if isinstance(layer, L.PositionEmbedding):
        return layer, "position_embeddings"
    if isinstance(layer, G.WidthGate):
        return _fold_target(node.keras_inputs[0], allowed | {layer.name})
    if isinstance(layer, K.Dropout) or _is_add(layer, node) or _is_identity(layer):
        for x in node.keras_inputs:
            found = _fold_target(x, allowed | {layer.name})
            if found is not None:
                return found
    return None


def _feeding_norms(node, removed: set) -> set:
    """The LayerNormalizations whose output only ``node``'s layer (and ``removed``) reads."""
    out = set()
    for x in node.keras_inputs:
        p = _producer(x)
        if isinstance(p, K.LayerNormalization) and {c.name for c in _consumers(x)} <= removed | {node.layer.name} \
                and len(p._inbound_nodes) == 1:
            out.add(p.name)
    return out


def _into_add(out, removed: set):
    """``(add, removed)``: the residual add ``out`` reaches through dropout read by nothing else
    (``removed`` grows by the dropout), or None."""
    removed = set(removed)
    while True:
        readers = _consumers(out)
        if len(readers) != 1 or _single_node(readers[0]) is None:
            return None
        reader = readers[0]
        if isinstance(reader, (K.Dropout, G.WidthGate)):
            removed.add(reader.name)
            out = _output(reader)
            if out is None:
                return None
            continue
        if not _is_add(reader, _single_node(reader)):
            return None
        return reader, out, removed


def _removal(group: str, out, removed: set, bias) -> BranchRemoval | None:
    """The :class:`BranchRemoval` of a branch whose output is ``out`` (``removed``: its layers)."""
    found = _into_add(out, removed)
    if found is None:
        return None
    add, last, removed = found
    others = [x for x in _single_node(add).keras_inputs if x is not last]
    if len(others) != 1:
        return None
    target = attr = None
    if bias is not None:
        fold = _fold_target(others[0], removed | {add.name})
        if fold is None or fold[0].name in removed:
            return None
        target, attr = fold[0].name, fold[1]
    return BranchRemoval(group, add.name, target, attr, bias, tuple(sorted(removed | {add.name})))


def _residual(model, r: BranchRemoval):
    """The tensor ``x`` that the add of branch ``r`` adds the branch to."""
    return next(x for x in _single_node(model.get_layer(r.add)).keras_inputs
                if _producer(x).name not in r.removed)


def _blocks(model, removals: dict, taken: set) -> dict:
    """``{block group: (attention group, feed-forward group)}``: an attention branch and the
    feed-forward branch whose residual is the attention's add, directly (pre-LN) or through the
    LayerNormalization after it (post-LN). Named ``<attention layer>_block``."""
    ffn = [r for key, r in removals.items() if r.group == key]
    out = {}
    for key, att in removals.items():
        if att.group == key:
            continue
        after = _output(model.get_layer(att.add))
        for r in ffn:
            x = _residual(model, r)
            p = _producer(x)
            if x is after or (isinstance(p, K.LayerNormalization) and _single_node(p) is not None
                              and _single_node(p).keras_inputs[0] is after):
                name = f"{key}_block"
                if name not in taken:
                    out[name] = (att.group, r.group)
                break
    return out


def _attention_removal(layer, group: str) -> BranchRemoval | None:
    """How ``layer`` (an attention layer) can go with all its heads (see :class:`BranchRemoval`)."""
    out = _output(layer)
    if out is None:
        return None
    removed = {layer.name}
    removed |= _feeding_norms(_single_node(layer), removed)
    attr = _output_bias(layer)
    return _removal(group, out, removed, (layer.name, attr) if attr else None)


def _ffn_removal(layer, group: str, readers: set) -> BranchRemoval | None:
    """How the feed-forward branch whose first Dense ``layer`` produces ``group`` can go with all its
    units: its output reaches, through activations and dropout only, one linear Dense (the output
    projection), and no other layer reads ``group`` (``readers``: the layers whose roles name it)."""
    out = _output(layer)
    if out is None or not isinstance(layer, _DENSE):
        return None
    removed = {layer.name}
    removed |= _feeding_norms(_single_node(layer), removed)
    while True:
        nxt = _consumers(out)
        if len(nxt) != 1 or _single_node(nxt[0]) is None:
            return None
        reader = nxt[0]
        if isinstance(reader, _BRANCH_CHANNELWISE) and not (isinstance(reader, K.Activation) and
                                                           getattr(reader.activation, "__name__", "") == "softmax"):
            removed.add(reader.name)
            out = _output(reader)
            if out is None:
                return None
            continue
        break
    if type(reader) not in (K.Dense, G.InputGatedDense) or not _linear(reader) or \
            _single_node(reader).keras_inputs[0] is not out:
        return None
    removed.add(reader.name)
    if not readers <= removed:
        return None
    out = _output(reader)
    if out is None:
        return None
    return _removal(group, out, removed, (reader.name, "bias") if reader.use_bias else None)


def _vocab_embedding(model):
    """The Embedding whose rows can be removed: it reads the token ids (directly or through a
    ``TokenRemap``), it is called once, and a ``PaddingMask`` reads the same ids, so padding is
    masked by id and row 0 can be the shared all-zero row of removed tokens (``mask_zero`` would
    mask removed tokens too). None when there is not exactly one."""
    found = []
    for layer in model.layers:
        if type(layer) is not K.Embedding or getattr(layer, "mask_zero", False) or _single_node(layer) is None:
            continue
        ids = _single_node(layer).keras_inputs[0]
        src = _producer(ids)
        if isinstance(src, L.TokenRemap) and _single_node(src) is not None:
            ids = _single_node(src).keras_inputs[0]
            src = _producer(ids)
        if not isinstance(src, K.InputLayer) or ids.dtype.is_floating:
            continue
        if any(isinstance(c, L.PaddingMask) for c in _consumers(ids)):
            found.append(layer)
    return found[0] if len(found) == 1 else None


def discover(model) -> Structure:
    """The prunable groups of any supported functional or Sequential tf_keras model (module
    docstring). Raises :class:`ModelError` naming the first layer it cannot read."""
    w = _Walk()
    for node in graph_nodes(model):
        if node.is_input:
            for t in tf.nest.flatten(node.outputs):
                w.layouts[id(t)] = w.opaque(t, "model input")
            continue
        if node.layer.name not in w.order:
            w.order.append(node.layer.name)
        for t, lay in zip(tf.nest.flatten(node.outputs), _visit(w, node)):
            w.layouts[id(t)] = lay
    for t in model.outputs:
        w.pin_layout(w.layout(t), "the model's output")
    sp = w.spaces
    streams = {sp.find(i) for layout in w.reads_whole if layout for i in layout}
    for layer_name, layout, reason in w.nonzero:
        for i in layout:
            if sp.find(i) in streams:
                sp.pin(i, f"layer {layer_name!r}: {reason}; a normalised width needs its closed channels at "
                          "exactly zero and its gates folded, so it stays whole")
    names: dict = {}   # root -> group name
    taken = {layer.name for layer in model.layers}
    groups: dict = {}
    for layer_name in w.order:  # name each group after its first producer
        if layer_name in w.produced:
            root = sp.find(w.produced[layer_name])
            if root not in names and not sp.pinned(root):
                names[root] = layer_name
                groups[layer_name] = sp.size[root]
    s = Structure(groups)
    s.streams = tuple(names[r] for r in sorted(streams) if r in names)
    for layer_name, roles in w.roles.items():
        for role, layout in roles.items():
            segs = tuple(names.get(sp.find(i), sp.size[sp.find(i)]) for i in layout)
            if any(isinstance(x, str) for x in segs):
                s.dims.setdefault(layer_name, {})[role] = Dim(segs)
    for layer_name, h in w.heads.items():
        if h >= 1:  # one head: a group only when the branch can go whole (below)
            g = f"{layer_name}_heads"
            if g in taken or g in groups:
                raise ModelError(f"layer {layer_name!r}: its heads group {g!r} clashes with a layer or group name")
            groups[g] = h
            s.head_groups[layer_name] = g
            s.dims.setdefault(layer_name, {})["heads"] = Dim((g,))
    s.writers = {name: role for name, role in w.writers.items()
                 if any(seg in s.streams for seg in s.dims.get(name, {}).get(role, Dim()).segments)}
    s.min_alive = {g: 1 for g in groups}
    readers: dict = {}  # group -> layers whose roles name it
    for layer_name, roles in s.dims.items():
        for dim in roles.values():
            for seg in dim.segments:
                if isinstance(seg, str):
                    readers.setdefault(seg, set()).add(layer_name)
    found = [(name, _attention_removal(model.get_layer(name), g)) for name, g in s.head_groups.items()]
    found += [(g, _ffn_removal(model.get_layer(g), g, readers[g])) for g in groups
              if g in w.produced and g not in s.head_groups.values()]
    for key, removal in found:
        if removal is None or any(set(removal.removed) & set(r.removed) for r in s.removals.values()):
            continue
        s.removals[key] = removal
        s.min_alive[removal.group] = 0
        for name in removal.removed:
            s.present[name] = Dim((1,), (removal.group,))
    for layer_name, g in list(s.head_groups.items()):
        if groups[g] == 1 and layer_name not in s.removals:
            del groups[g], s.head_groups[layer_name], s.dims[layer_name]["heads"], s.min_alive[g]
            if not s.dims[layer_name]:
                del s.dims[layer_name]
    for block, members in _blocks(model, s.removals, taken | set(groups)).items():
        groups[block] = 1
        s.min_alive[block] = 0
        s.blocks[block] = members
        for r in s.removals.values():
            if r.group in members:
                for name in r.removed:
                    s.present[name] = Dim((1,), (r.group, block))
    vocab = _vocab_embedding(model)
    if vocab is not None and int(vocab.input_dim) > 1 and VOCAB not in taken | set(groups):
        groups[VOCAB] = int(vocab.input_dim) - 1
        s.vocab_embedding = vocab.name
        s.dims.setdefault(vocab.name, {})["rows"] = Dim((1, VOCAB))
    seen = set()
    for root, reasons in sp.pins.items():
        if sp.find(root) == root and reasons and root not in seen:
            seen.add(root)
            owner = sp.producers[root][0] if sp.producers[root] else None
            if owner is not None:
                s.pinned.append(f"{owner} ({sp.size[root]} units): {reasons[0]}")
    return s


def replay(model, call, inputs=None):
    """Rebuild ``model``'s graph on new inputs: ``call(node, args, kwargs)`` returns the outputs of
    each call node (args/kwargs already hold the new tensors; ``None`` stands for an output the
    replay drops, e.g. a gate). ``inputs``: the new input tensors (default: fresh ``keras.Input``s
    of the same shapes, dtypes and names). Returns ``(inputs, outputs)``."""
    nodes = graph_nodes(model)
    if inputs is None:
        inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0].split("/")[0])
                  for t in model.inputs]
    new = {id(t): n for t, n in zip(model.inputs, inputs)}

    def mapped(v):
        return new.get(id(v), v) if hasattr(v, "shape") else v

    for node in nodes:
        if node.is_input:
            continue
        args = tf.nest.map_structure(mapped, node.call_args)
        kwargs = tf.nest.map_structure(mapped, node.call_kwargs)
        outs = call(node, args, kwargs)
        for t, n in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outs)):
            new[id(t)] = n
    return inputs, [new[id(t)] for t in model.outputs]


__all__ = ["replay", "discover", "Structure", "VOCAB", "BranchRemoval", "graph_nodes", "keras_inputs", "CHANNELWISE", "MERGES", "PRODUCERS"]
