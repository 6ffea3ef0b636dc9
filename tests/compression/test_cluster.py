"""cluster (tfmot weight sharing) incl. the project's attention layers: at most k values per weight,
strip parity, and sparsity-preserving clustering after pruning keeps exactly the same zeros."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import run_pass, transformer_state
from rmcompress.compression.cluster import cluster
from rmcompress.compression.fuse import fuse
from rmcompress.compression.prune import prune
from rmcompress.compression.settings import ClusterSettings, PruneSettings
from rmcompress.compression.targets import weight_arrays


@pytest.fixture(scope="module")
def state(tmp_path_factory, pointwise_file):
    return transformer_state(tmp_path_factory, pointwise_file, max_steps=4)


def test_cluster_limits_distinct_values_and_preserves_sparsity(state):
    fused, _ = fuse(state.model, state.val_ids(32))
    clustered, note = cluster(fused, state, ClusterSettings(clusters=4, steps=2))
    assert not note["preserve_sparsity"] and note["strip_max_abs_diff"] <= 1e-6
    for name in note["layers"]:
        for k, w in weight_arrays(clustered.get_layer(name)).items():
            assert len(np.unique(w)) <= 4, (name, k)
    assert len(np.unique(clustered.get_layer("reward").get_weights()[0])) > 4  # head untouched
    pruned, _ = prune(fused, state, PruneSettings(sparsity=0.5, schedule="constant", steps=0))
    clustered, note = cluster(pruned, state, ClusterSettings(clusters=6, steps=3, learning_rate=1e-3))
    assert note["preserve_sparsity"]
    for name in note["layers"]:
        before, after = weight_arrays(pruned.get_layer(name)), weight_arrays(clustered.get_layer(name))
        for k in before:
            np.testing.assert_array_equal(after[k] == 0, before[k] == 0)  # the same zeros, exactly
            assert len(np.unique(after[k])) <= 6


def test_layer_clusters_sets_a_count_per_layer_and_the_position_table_is_clustered(state):
    fused, _ = fuse(state.model, state.val_ids(32))
    clustered, note = cluster(fused, state, ClusterSettings(clusters=6, layer_clusters={"^token_emb": 3, "emb": 5},
                                                              steps=2))
    per = note["clusters_per_layer"]
    assert per["token_embedding"] == 3  # first matching regex wins
    assert per["position_embedding"] == 5 and per["block0_attn"] == 6
    for name, k in per.items():
        for w in weight_arrays(clustered.get_layer(name)).values():
            assert 1 < len(np.unique(w)) <= k, name
    assert note["distinct_values"]["position_embedding"] == {"position_embeddings": 5}


def test_recipe_rejects_a_bad_layer_clusters_map():
    from rmcompress.compression.recipe import Recipe
    from rmcompress.errors import RecipeError

    for bad, words in (({"(": 4}, "invalid regular expression"), ({"emb": 1}, "integers >= 2")):
        with pytest.raises(RecipeError, match="layer_clusters") as e:
            Recipe.from_dict({"passes": [{"cluster": {"layer_clusters": bad}}]})
        assert words in str(e.value)


def test_prune_and_cluster_reach_the_exact_rows_of_a_two_tier_table(state):
    """A two-tier ``FactorizedEmbedding`` (factorise ``full_rows``): pruning and clustering treat its
    exact-row table like its other two tables."""
    import copy

    from rmcompress.layers.compressed import FactorizedEmbedding

    st = copy.copy(state)
    st, note = run_pass("factorise", st, vocab_prune=True, rank=4, full_rows=8)
    layer = st.model.get_layer("token_embedding")
    assert isinstance(layer, FactorizedEmbedding) and layer.full_rows == 8 and note["full_rows"] == 8
    pruned, _ = prune(st.model, st, PruneSettings(sparsity=0.5, schedule="constant", steps=0))
    tables = weight_arrays(pruned.get_layer("token_embedding"))
    assert set(tables) == {"embeddings", "projection", "full"}
    assert np.mean(tables["full"] == 0) == pytest.approx(0.5, abs=0.05)
    clustered, note = cluster(st.model, st, ClusterSettings(clusters=4, steps=2))
    assert "token_embedding" in note["layers"]
    for k, w in weight_arrays(clustered.get_layer("token_embedding")).items():
        assert len(np.unique(w)) <= 4, k
