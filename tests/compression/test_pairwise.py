"""The pairwise task through a collaborative recipe: prune -> cluster -> PCQAT int8, exported and
checked; after QAT the pruned zeros and the clusters are still there."""
from __future__ import annotations

from tests.helpers import tiny_config
from rmcompress.compression.pipeline import compress

COLLAB = {"name": "collab", "passes": ["fuse", {"prune": {"sparsity": 0.5, "steps": 2, "frequency": 1}},
                                       {"cluster": {"clusters": 8, "steps": 1}}, "length",
                                       {"quantise": {"mode": "qat", "steps": 2, "batch_size": 16}}],
          "export": {"formats": ["tflite"], "latency_runs": 5}}


def test_pairwise_collaborative_qat(pairwise_file, tmp_path):
    from rmcompress.training.trainer import train

    # trained enough that rewards spread beyond one int8 step (the parity check compares rankings)
    train(pairwise_file, tiny_config(task="pairwise", arch="transformer", epochs=4, max_steps=None,
                                     learning_rate=3e-3), tmp_path / "m", verbose=0)
    r = compress(tmp_path / "m", COLLAB, pairwise_file, tmp_path / "out", latency_runs=5)
    assert r["task"] == "pairwise" and 0 <= r["pairwise_accuracy"] <= 1 and r["quantize"] == "qat"
    q = next(n for n in r["passes"] if n["pass"] == "quantise")
    assert q["preserve"] == "prune_cluster"
    for name, w in q["weights_after_qat"].items():
        if not name.startswith(("reward", "position")):
            assert w["sparsity"] >= 0.45 and w["distinct"] <= 9, name  # PCQAT kept zeros and clusters
    # the per-pass ledger in pair orders: fuse keeps them; after QAT it scores the fake-quant model,
    # which the int8 file reproduces up to the pairs whose order parity says changed
    fuse = r["passes"][0]["validation"]
    assert set(fuse) == {"pairwise_accuracy", "drop_points", "decision_agreement"}
    assert fuse["decision_agreement"] >= 0.98 and abs(fuse["drop_points"]) <= 2 * 100 / r["n_examples"]
    assert abs(q["validation"]["pairwise_accuracy"] - r["pairwise_accuracy"]) <= 1 - r["parity_decision_agreement"] + 1e-9
