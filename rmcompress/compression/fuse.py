"""``fuse``: exact inference-time rewrites that remove ops (float outputs equal within ``tolerance``).

Rewrites, applied in this order, each only where it is exact:

1. **dropout**: every Dropout-family layer (identity at inference) is removed.
2. **batchnorm**: ``BN(x W + b)`` with a linear Dense/Conv producer used only by the BN becomes
   ``x (W s) + ((b - mean) s + beta)`` with ``s = gamma / sqrt(var + eps)`` per output channel.
3. **layernorm**: ``LN(x) = n(x) * gamma + beta`` feeding only Dense / self-attention layers: the
   consumers absorb the affine part, ``(n gamma + beta) W + b = n (diag(gamma) W) + (beta W + b)``,
   and the LN keeps only its normalisation (``center=scale=False``: two elementwise ops fewer).
   An LN whose only consumer is a masked *mean* pooling read only by Dense layers gives them its
   scale, ``mean_t(n_t gamma + beta) W = mean_t(n_t + beta / gamma) (diag(gamma) W)`` (the mean is
   linear; exact for every input, an all-padding row included; skipped if a ``gamma`` is 0), and
   keeps only an offset (``scale=False``: two elementwise ops over ``[B, T, d]`` fewer). The offset
   cannot move too: an all-padding row pools to 0, not to ``beta``. An LN feeding anything else (a
   residual add, max pooling) is left alone.
4. **qkv**: ``MultiHeadSelfAttention`` -> :class:`FusedQKVSelfAttention` with
   ``W_qkv = [Wq | Wk | Wv]``: one matmul instead of three. The score scale moves into the query
   projection, ``(x Wq + bq) k^T / sqrt(dh) = (x Wq/sqrt(dh) + bq/sqrt(dh)) k^T``
   (``scale_scores=False``): one elementwise op over ``[B, H, T, T]`` fewer (bit-exact when ``dh``
   is a power of 4, e.g. 16 or 64; otherwise within float rounding).
5. **dense_chain**: ``Dense_B(Dense_A(x))`` with a linear ``A`` used only by ``B`` becomes one Dense
   ``x (W_A W_B) + (b_A W_B + b_B)`` when that lowers FLOPs (``d_in*u_B < d_in*u_A + u_A*u_B``).
6. **matmul**: a Dense applied to ``[B, T, d]`` becomes :class:`PointwiseDense` (same weights): one
   broadcast matmul instead of ``tensordot``'s run-time reshapes (fewer TFLite ops; and int8 QAT
   needs the bias add right after the matmul to quantise the FULLY_CONNECTED output).
7. **positions**: ``PositionEmbedding`` becomes :class:`GatherPositionEmbedding` (same table, read by
   ``gather``): with a dynamic length it is quantised like the token table instead of staying float.

:func:`fuse` returns the new model and a note of what changed; it checks the outputs against the
original on sample ids and raises :class:`ModelError` if they differ by more than
``tolerance * max(1, max |r|)`` (:func:`rmcompress.metrics.rounding_bound`, ``r`` the original's rewards).
"""
from __future__ import annotations

import numpy as np

from rmcompress._keras import keras
from rmcompress.compression.graph import Graph, layer_entry, rebuild
from rmcompress.layers.compressed import FusedQKVSelfAttention, GatherPositionEmbedding, PointwiseDense
from rmcompress.compression.settings import FuseSettings
from rmcompress.metrics import rounding_bound
from rmcompress.errors import ModelError
from rmcompress.layers.encoder import MultiHeadSelfAttention

DROPOUT_CLASSES = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                   "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization"}
LINEAR_PRODUCERS = {"Dense", "Conv1D", "Conv2D"}
ATTENTION_CLASSES = {"MultiHeadSelfAttention", "FusedQKVSelfAttention"}
DENSE_CLASSES = {"Dense", "PointwiseDense"}
#: the rewrites of :func:`fuse`, in the order they run (each a method of ``_Fuser``)
REWRITES = ("dropout", "batchnorm", "layernorm", "qkv", "dense_chain", "matmul", "positions")


def named_weights(layer) -> dict[str, np.ndarray]:
    """``{variable short name: value}`` (``kernel``, ``bias``, ``gamma``, ``query_kernel``, ...)."""
    return {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in layer.weights}


def _is_linear(cfg: dict) -> bool:
    act = cfg.get("activation")
    if isinstance(act, dict):  # a registered function (e.g. rmcompress>gelu_tanh) has a string config
        conf = act.get("config")
        act = conf.get("name", act.get("class_name")) if isinstance(conf, dict) else (conf or act.get("class_name"))
    return act in (None, "linear")


class _Fuser:
    def __init__(self, model: keras.Model):
        self.model = model
        self.graph = Graph(model)
        self.named: dict[str, dict[str, np.ndarray]] = {}   # rewritten layers: name -> named weights
        self.order: dict[str, list[str]] = {}               # ... and the order the layer creates them
        self.note: dict = {"removed_dropout": [], "folded_batchnorm": [], "folded_layernorm": [],
                           "folded_layernorm_scale": [], "fused_qkv": [], "folded_score_scale": [], "merged_dense": [],
                           "pointwise_dense": [], "gather_positions": []}

    def current(self, name: str) -> dict[str, np.ndarray]:
        """Named weights of ``name`` as rewritten so far (or as in the source model)."""
        if name in self.named:
            return dict(self.named[name])
        return named_weights(self.model.get_layer(name))

    def set(self, name: str, named: dict[str, np.ndarray], order: list[str]) -> None:
        self.named[name] = named
        self.order[name] = order

    @property
    def weights(self) -> dict[str, list[np.ndarray]]:
        return {n: [self.named[n][k] for k in self.order[n]] for n in self.named}

    # -- 1. dropout -------------------------------------------------------------------------------
    def dropout(self):
        for e in list(self.graph.entries):
            if e["class_name"] in DROPOUT_CLASSES:
                self.graph.bypass(e["name"])
                self.note["removed_dropout"].append(e["name"])

    # -- 2. batchnorm -----------------------------------------------------------------------------
    def batchnorm(self):
        for e in list(self.graph.entries):
            if e["class_name"] != "BatchNormalization":
                continue
            name, cfg = e["name"], e["config"]
            srcs = self.graph.inputs_of(name)
            if len(srcs) != 1:
                continue
            src = srcs[0]
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
            if self.graph.class_name(src) not in LINEAR_PRODUCERS or axis not in (-1,) and \
                    axis != len(self.model.get_layer(src).output_shape) - 1:
                continue
            pcfg = self.graph.layer_config(src)
            if not _is_linear(pcfg) or self.graph.consumers_of(src) != [name] or self.graph.is_output(src):
                continue
            bn = named_weights(self.model.get_layer(name))
            gamma = bn.get("gamma", np.ones_like(bn["moving_mean"]))
            beta = bn.get("beta", np.zeros_like(bn["moving_mean"]))
            s = gamma / np.sqrt(bn["moving_variance"] + cfg.get("epsilon", 1e-3))
            w = self.current(src)
            bias = w.get("bias", np.zeros(w["kernel"].shape[-1], w["kernel"].dtype))
            new = {"kernel": (w["kernel"] * s).astype(np.float32),
                   "bias": ((bias - bn["moving_mean"]) * s + beta).astype(np.float32)}
            pcfg["use_bias"] = True
            self.set(src, new, ["kernel", "bias"])
            self.graph.bypass(name)
            self.note["folded_batchnorm"].append(f"{name} -> {src}")

    # -- 3. layernorm -----------------------------------------------------------------------------
    def layernorm(self):
        for e in list(self.graph.entries):
            if e["class_name"] != "LayerNormalization":
                continue
            name, cfg = e["name"], e["config"]
            if not (cfg.get("center", True) or cfg.get("scale", True)):
                continue
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
            if axis not in (-1, len(self.model.get_layer(name).output_shape) - 1):
                continue
            consumers = self.graph.consumers_of(name)
            if not consumers or self.graph.is_output(name):
                continue
            ok = all(self.graph.class_name(c) in DENSE_CLASSES or
                     (self.graph.class_name(c) in ATTENTION_CLASSES and self.graph.inputs_of(c)[0] == name
                      and self.graph.inputs_of(c).count(name) == 1)
                     for c in consumers)
            if not ok:
                self._fold_scale_through_mean_pool(name, cfg, consumers)
                continue
            ln = named_weights(self.model.get_layer(name))
            d = self.model.get_layer(name).output_shape[-1]
            gamma = ln.get("gamma", np.ones(d, np.float32))
            beta = ln.get("beta", np.zeros(d, np.float32))
            for c in consumers:
                self._absorb_affine(c, gamma, beta)
            cfg["center"] = False
            cfg["scale"] = False
            self.set(name, {}, [])
            self.note["folded_layernorm"].append(f"{name} -> {', '.join(consumers)}")

    def _fold_scale_through_mean_pool(self, name: str, cfg: dict, consumers: list[str]) -> None:
        """``LN -> MaskedMeanPooling -> Dense...``: the Dense kernels absorb ``gamma`` (docstring, 3)."""
        if not cfg.get("scale", True) or len(consumers) != 1:
            return
        pool = consumers[0]
        if self.graph.class_name(pool) != "MaskedMeanPooling" or self.graph.inputs_of(pool)[0] != name \
                or self.graph.inputs_of(pool).count(name) != 1 or self.graph.is_output(pool):
            return
        readers = self.graph.consumers_of(pool)
        if not readers or not all(self.graph.class_name(r) in DENSE_CLASSES for r in readers):
            return
        ln = named_weights(self.model.get_layer(name))
        gamma = ln["gamma"]
        if np.any(gamma == 0):
            return
        for r in readers:
            self._absorb_affine(r, gamma, np.zeros_like(gamma))
        cfg["scale"] = False
        if cfg.get("center", True):
            self.set(name, {"beta": (ln["beta"] / gamma).astype(np.float32)}, ["beta"])
        else:
            self.set(name, {}, [])
        self.note["folded_layernorm_scale"].append(f"{name} -> {pool} -> {', '.join(readers)}")

    def _absorb_affine(self, consumer: str, gamma, beta):
        """``consumer`` reads ``n*gamma + beta`` instead of ``n``: fold the affine into its kernels."""
        w = self.current(consumer)
        kind = self.graph.class_name(consumer)
        if kind in DENSE_CLASSES:
            cfg = self.graph.layer_config(consumer)
            bias = w.get("bias", np.zeros(w["kernel"].shape[-1], np.float32))
            new = {"kernel": gamma[:, None] * w["kernel"], "bias": bias + beta @ w["kernel"]}
            cfg["use_bias"] = True
            self.set(consumer, new, ["kernel", "bias"])
            return
        pairs = [("qkv_kernel", "qkv_bias")] if "qkv_kernel" in w else \
            [("query_kernel", "query_bias"), ("key_kernel", "key_bias"), ("value_kernel", "value_bias")]
        for k, b in pairs:
            w[b] = (w[b] + beta @ w[k]).astype(np.float32)
            w[k] = (gamma[:, None] * w[k]).astype(np.float32)
        order = self.order.get(consumer) or [
            v.name.split("/")[-1].split(":")[0] for v in self.model.get_layer(consumer).weights]
        self.set(consumer, w, order)

    # -- 4. qkv -----------------------------------------------------------------------------------
    def qkv(self):
        for e in list(self.graph.entries):
            if e["class_name"] != "MultiHeadSelfAttention":
                continue
            name = e["name"]
            w = self.current(name)
            cfg = e["config"]
            scale = np.float32(1.0 / np.sqrt(cfg["head_dim"])) if cfg.get("scale_scores", True) else np.float32(1.0)
            cfg["scale_scores"] = False
            new = {"qkv_kernel": np.concatenate([w["query_kernel"] * scale, w["key_kernel"], w["value_kernel"]], 1),
                   "qkv_bias": np.concatenate([w["query_bias"] * scale, w["key_bias"], w["value_bias"]], 0),
                   "output_kernel": w["output_kernel"], "output_bias": w["output_bias"]}
            ent = layer_entry(FusedQKVSelfAttention, e["config"], name)
            self.graph.replace(name, ent["class_name"], e["config"], ent["module"], ent["registered_name"])
            self.set(name, new, ["qkv_kernel", "qkv_bias", "output_kernel", "output_bias"])
            self.note["fused_qkv"].append(name)
            if scale != 1:
                self.note["folded_score_scale"].append(name)

    # -- 5. dense chain ---------------------------------------------------------------------------
    def dense_chain(self):
        changed = True
        while changed:
            changed = False
            for e in list(self.graph.entries):
                b_name = e["name"]
                if e["class_name"] not in DENSE_CLASSES:
                    continue
                srcs = self.graph.inputs_of(b_name)
                if len(srcs) != 1 or self.graph.class_name(srcs[0]) not in DENSE_CLASSES:
                    continue
                a_name = srcs[0]
                a_cfg = self.graph.layer_config(a_name)
                if not _is_linear(a_cfg) or self.graph.consumers_of(a_name) != [b_name] or \
                        self.graph.is_output(a_name):
                    continue
                wa, wb = self.current(a_name), self.current(b_name)
                d_in, u_a = wa["kernel"].shape
                u_b = wb["kernel"].shape[1]
                if d_in * u_b >= d_in * u_a + u_a * u_b:
                    continue
                ba = wa.get("bias", np.zeros(u_a, np.float32))
                bb = wb.get("bias", np.zeros(u_b, np.float32))
                new = {"kernel": (wa["kernel"] @ wb["kernel"]).astype(np.float32),
                       "bias": (ba @ wb["kernel"] + bb).astype(np.float32)}
                self.graph.layer_config(b_name)["use_bias"] = True
                self.graph.bypass(a_name)
                self.set(b_name, new, ["kernel", "bias"])
                self.note["merged_dense"].append(f"{a_name} + {b_name}")
                changed = True
                break

    # -- 6. matmul --------------------------------------------------------------------------------
    def matmul(self):
        for e in list(self.graph.entries):
            if e["class_name"] != "Dense" or len(self.model.get_layer(e["name"]).input_shape) < 3:
                continue
            ent = layer_entry(PointwiseDense, e["config"], e["name"])
            self.graph.replace(e["name"], ent["class_name"], e["config"], ent["module"], ent["registered_name"])
            self.note["pointwise_dense"].append(e["name"])

    # -- 7. positions -----------------------------------------------------------------------------
    def positions(self):
        for e in list(self.graph.entries):
            if e["class_name"] != "PositionEmbedding":
                continue
            ent = layer_entry(GatherPositionEmbedding, e["config"], e["name"])
            self.graph.replace(e["name"], ent["class_name"], e["config"], ent["module"], ent["registered_name"])
            self.note["gather_positions"].append(e["name"])


def fuse(model: keras.Model, sample_ids: np.ndarray | None = None,
         settings: FuseSettings = FuseSettings()) -> tuple[keras.Model, dict]:
    """Apply the rewrites ``settings`` switch on (module docstring); return ``(new_model, note)``.
    ``note`` lists what was changed and ``max_abs_diff`` against ``model`` on ``sample_ids`` (when
    given), which must be within ``settings.tolerance``."""
    f = _Fuser(model)
    for rewrite in REWRITES:  # in this order: each sees the graph the ones before it left
        if getattr(settings, rewrite):
            getattr(f, rewrite)()
    new = rebuild(model, f.graph, f.weights, name=model.name)
    note = {k: v for k, v in f.note.items()}
    if sample_ids is not None and len(sample_ids):
        reference = model.predict(np.asarray(sample_ids), batch_size=256, verbose=0)
        diff = max_abs_diff(model, new, sample_ids, reference=reference)
        bound = rounding_bound(reference, settings.tolerance)
        note["max_abs_diff"] = diff
        if diff > bound:
            raise ModelError(f"fuse: fused model differs from the original by {diff:.3g} > {bound:.3g} "
                             f"(tolerance {settings.tolerance:g} x max(1, max |reward|); changes: {note})")
    return new, note


def max_abs_diff(a: keras.Model, b: keras.Model, ids: np.ndarray, batch_size: int = 256, reference=None) -> float:
    """``max |r_a - r_b|`` on ``ids`` (``reference``: ``a``'s rewards on them, when already scored)."""
    ra = a.predict(np.asarray(ids), batch_size=batch_size, verbose=0) if reference is None else reference
    rb = b.predict(np.asarray(ids), batch_size=batch_size, verbose=0)
    return float(np.max(np.abs(ra - rb))) if len(ra) else 0.0


__all__ = ["fuse", "max_abs_diff", "named_weights", "MultiHeadSelfAttention"]
