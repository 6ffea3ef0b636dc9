"""``cluster``: tfmot weight clustering (weight sharing) with fine-tuning, stripped for the user.

Each selected layer's kernels are replaced during training by ``centroids[index]`` with
``clusters`` centroids per weight tensor, or for layers whose name matches a regex of
``layer_clusters`` (``{regex: clusters}``, first match wins) that many, or for the token table
(the Embedding the ids read, whatever a user named it) ``embedding_clusters``
(``tfmot.clustering.keras.cluster_weights``; built-in
Dense/Conv1D/Embedding via tfmot's registry, the project's attention layers and
``FactorizedEmbedding`` as ``ClusterableLayer``s through their ``get_clusterable_weights``).
``preserve_sparsity`` (``auto``: when the weights already have zeros, i.e. after ``prune``) keeps
pruned weights at exactly zero (sparsity-preserving clustering). After fine-tuning,
``strip_clustering`` returns a plain model; the check: its outputs equal the clustered model's, and
each clustered weight has at most ``clusters`` distinct values. Clustering pays off gzipped (few
distinct values compress well) and combined with int8 (the centroids survive quantisation as
at most ``clusters`` int8 codes). A selected layer with fewer distinct values than its clusters (a
tiny layer, or one mostly pruned) is left as it is and listed under ``too_few_values``.
"""
from __future__ import annotations

import re

import numpy as np

from rmcompress._keras import keras
from rmcompress.compression.factorise import token_embedding_names
from rmcompress.compression.finetune import capped_steps, finetune
from rmcompress.compression.fuse import max_abs_diff
from rmcompress.layers.compressed import FactorizedEmbedding, PointwiseDense
from rmcompress.compression.settings import ClusterSettings
from rmcompress.compression.state import CompressState
from rmcompress.compression.targets import copy_model, keep_mask, select_layers, weight_arrays
from rmcompress.errors import ModelError, RecipeError
from rmcompress.layers.encoder import MultiHeadSelfAttention, PositionEmbedding

_INIT = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}


def _register_clusterable() -> None:
    """Declare the project's layers as tfmot ``ClusterableLayer``s (they implement its methods)."""
    from tensorflow_model_optimization.python.core.clustering.keras.clusterable_layer import ClusterableLayer

    for cls in (MultiHeadSelfAttention, FactorizedEmbedding, PointwiseDense, PositionEmbedding):
        if not issubclass(cls, ClusterableLayer):
            ClusterableLayer.register(cls)


def distinct_values(model: keras.Model, names: list[str]) -> dict:
    """``{layer: {weight: number of distinct values}}``."""
    return {n: {k: int(len(np.unique(v))) for k, v in weight_arrays(model.get_layer(n)).items()} for n in names}


def clusters_per_layer(names: list[str], clusters: int, layer_clusters: dict | None = None,
                       token_tables: tuple[str, ...] = (), embedding_clusters: int | None = None) -> dict[str, int]:
    """``{layer: number of clusters}``: the first ``layer_clusters`` regex that matches, else
    ``embedding_clusters`` for the token tables ``token_tables`` (when given), else ``clusters``."""
    out = {}
    for n in names:
        match = [int(k) for pat, k in (layer_clusters or {}).items() if re.search(pat, n)]
        if match:
            out[n] = match[0]
        elif n in token_tables and embedding_clusters is not None:
            out[n] = int(embedding_clusters)
        else:
            out[n] = int(clusters)
    return out


def cluster(model: keras.Model, state: CompressState,
            settings: ClusterSettings = ClusterSettings()) -> tuple[keras.Model, dict]:
    """Cluster ``model`` (a copy; the input is untouched); return ``(stripped_model, note)``."""
    s = settings
    clusters, init, preserve_sparsity, layer_clusters = s.clusters, s.init, s.preserve_sparsity, s.layer_clusters
    steps, learning_rate, batch_size = s.steps, s.learning_rate, s.batch_size
    import tensorflow_model_optimization as tfmot

    _register_clusterable()
    cl = tfmot.clustering.keras
    base = copy_model(model)
    names = select_layers(base, s.layers, s.embedding)
    if not names:
        raise RecipeError("cluster: no layer selected (check layers.include/exclude and embedding)")
    if preserve_sparsity == "auto":
        zeros = [np.mean(v == 0) for n in names for v in weight_arrays(base.get_layer(n)).values()]
        preserve_sparsity = bool(zeros) and float(np.mean(zeros)) > 0.05
    per_layer = clusters_per_layer(names, clusters, layer_clusters, tuple(token_embedding_names(base)),
                                   s.embedding_clusters)
    if preserve_sparsity and min(per_layer.values()) < 3:
        raise RecipeError("cluster.clusters: sparsity-preserving clustering needs clusters >= 3 "
                          f"(per layer: {per_layer})")
    too_small = {}
    for n in names:  # k-means needs at least as many distinct values as clusters
        fewest = min(len(np.unique(v[v != 0] if preserve_sparsity else v))
                     for v in weight_arrays(base.get_layer(n)).values())
        if fewest < per_layer[n]:
            too_small[n] = f"{fewest} distinct values for {per_layer[n]} clusters"
    names = [n for n in names if n not in too_small]
    if not names:
        return base, {"layers": [], "skipped": f"no layer has enough distinct values to cluster ({too_small})",
                      "too_few_values": too_small, "preserve_sparsity": bool(preserve_sparsity),
                      "strip_max_abs_diff": 0.0}
    init_enum = getattr(cl.CentroidInitialization, _INIT[init])

    def wrap(layer):
        if layer.name not in names:
            return layer
        try:
            return keep_mask(cl.cluster_weights(layer, number_of_clusters=per_layer[layer.name],
                                                cluster_centroids_init=init_enum,
                                                preserve_sparsity=bool(preserve_sparsity)), layer)
        except (ValueError, TypeError) as e:
            raise ModelError(f"cluster: layer {layer.name!r} ({type(layer).__name__}) cannot be clustered: "
                             f"{str(e).splitlines()[0][:200]}") from None

    wrapped = keras.models.clone_model(base, clone_function=wrap)
    requested, steps = steps, capped_steps(state, steps, batch_size)
    history = finetune(wrapped, state, steps, learning_rate, batch_size) if steps > 0 else {}
    stripped = copy_model(cl.strip_clustering(wrapped))
    diff = max_abs_diff(wrapped, stripped, state.val_ids(256))
    if diff > 1e-5:
        raise ModelError(f"cluster: stripped model differs from the clustered model by {diff:.3g}")
    distinct = distinct_values(stripped, names)
    for n, d in distinct.items():
        worst = max(d.values())
        if worst > per_layer[n] + (1 if preserve_sparsity else 0):
            raise ModelError(f"cluster: layer {n!r} kept {worst} distinct values in a weight "
                             f"(> {per_layer[n]} clusters)")
    note = {"layers": names, "too_few_values": too_small, "clusters": int(clusters), "clusters_per_layer": per_layer, "init": init, "preserve_sparsity": bool(preserve_sparsity),
            "steps": steps, "steps_requested": requested, "distinct_values": distinct, "strip_max_abs_diff": diff}
    if preserve_sparsity:
        note["sparsity"] = {n: {k: float(np.mean(v == 0)) for k, v in weight_arrays(stripped.get_layer(n)).items()}
                            for n in names}
    if history:
        note["final_train_loss"] = history.get("loss", [None])[-1]
    return stripped, note
