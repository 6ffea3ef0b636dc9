"""compress(): recipe -> passes -> export (SavedModel + TFLite) -> parity -> evaluation -> report.json,
from Python and from the CLI; the budget step through a stand-in of the complexity API."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.helpers import tiny_config
from rmcompress.compression.recipe import Recipe
from rmcompress.compression.pipeline import compress
from rmcompress.errors import RecipeError, UsageError

ROW_KEYS = {"task", "n_examples", "accuracy", "flops", "params", "size_bytes", "size_gzip_bytes",
            "latency_ms_p50", "parity_max_abs_diff", "recipe"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, pointwise_file):
    from rmcompress.training.trainer import train

    out = tmp_path_factory.mktemp("pipe") / "m"
    train(pointwise_file, tiny_config(arch="transformer", max_steps=6), out, verbose=0)
    return out


def test_light_level_end_to_end(model_dir, pointwise_file, tmp_path):
    from rmcompress.evaluation.evaluate import evaluate
    from rmcompress.models.modeldir import load_model_dir

    out = tmp_path / "light"
    lines = []
    report = compress(model_dir, "light", pointwise_file, out, latency_runs=20, log=lines.append)
    assert ROW_KEYS <= set(report) and report["recipe"] == "light" and report["quantize"] == "dynamic"
    for f in ("model.tflite", "saved_model/saved_model.pb", "vocab.txt", "tokenizer.json", "metadata.json",
              "report.json", "recipe.yaml", "model/model.keras", "model/samples.npz"):
        assert (out / f).exists(), f
    assert [n["pass"] for n in report["passes"]] == ["fuse", "length", "quantise"]
    assert report["passes"][0]["max_abs_diff"] <= 1e-5
    # the per-pass ledger: fuse is exact; dynamic-range quantisation happens at export, so its pass
    # leaves the Keras model's figure as it was and the file's own figure is the row's
    ledger = [n["validation"] for n in report["passes"]]
    assert ledger[0]["decision_agreement"] >= 0.99 and abs(ledger[0]["drop_points"]) <= 100 / report["n_examples"]
    assert ledger[-1] == ledger[0]
    assert any(re.fullmatch(r"\[light\] pass fuse: \d+\.\d s; validation accuracy \d\.\d{4} "
                            r"\(drop -?\d+\.\d\d points\)", line) for line in lines), lines
    assert report["parity_decision_agreement"] >= 0.95 and report["vs_source_spearman"] > 0.95
    assert report["size_ratio"] > 1.2 and report["length_trim_max_abs_diff"] <= 1e-4
    # the drop's paired standard error: only rows whose decision flipped contribute, so
    # se <= 100 * sqrt(flips / (n - 1)) / sqrt(n)
    n, flips = report["n_examples"], report["n_examples"] * (1 - report["vs_source_decision_agreement"])
    assert 0 <= report["accuracy_drop_se_points"] <= 100 * np.sqrt(flips / (n - 1) / n) + 1e-9
    assert report["latency_ms_p50_real_length"] > 0 and report["length_buckets"][-1] == 16
    # both files timed interleaved after the export: the ratio is of the two figures reported
    assert report["latency_speedup"] == pytest.approx(report["source_latency_ms_p50"] / report["latency_ms_p50"])
    assert json.loads((out / "report.json").read_text())["latency_ms_p50"] == report["latency_ms_p50"]
    # the artifacts are usable by the other stages
    ev = evaluate(out, pointwise_file, latency_runs=0)
    assert ev["kind"] == "tflite" and 0 <= ev["accuracy"] <= 1
    bundle = load_model_dir(out / "model")
    assert bundle.tokenizer.vocabulary == (out / "vocab.txt").read_text().split("\n")[:-1]
    with pytest.raises(UsageError, match="already exists"):
        compress(model_dir, "light", pointwise_file, out)


def test_budget_pass_calls_the_complexity_api(model_dir, pointwise_file, tmp_path, monkeypatch):
    from rmcompress.data.pipeline import EncodedData
    from rmcompress.models.archconfig import ArchConfig
    from rmcompress.models.architectures import build_reward_model
    from rmcompress.compression import budget as budget_pass_module
    from rmcompress.models.modeldir import RewardModelBundle

    calls = {}

    def budget_compress(bundle, train_data, val_data, **kw):  # stand-in for issue 3's API
        calls.update(kw, train=train_data, val=val_data, bundle=bundle)
        cfg = ArchConfig.from_dict({**bundle.metadata["arch"], "ffn": 4, "dropout": 0.0})
        model = build_reward_model(cfg)
        # every decision the opposite of most of the source model's
        calls["source_positive"] = bundle.model.predict(val_data.ids, verbose=0).reshape(-1) > 0
        shift = -20.0 if calls["source_positive"].mean() >= 0.5 else 20.0
        kernel, bias = model.get_layer("reward").get_weights()
        model.get_layer("reward").set_weights([kernel, bias + shift])
        return RewardModelBundle(model, bundle.tokenizer, bundle.metadata)

    monkeypatch.setattr(budget_pass_module, "budget_compress", budget_compress)
    recipe = {"name": "b", "passes": [{"budget": {"flops_fraction": 0.5, "steps": 7}}, "fuse",
                                      {"quantise": {"mode": "float16"}}]}
    report = compress(model_dir, recipe, pointwise_file, tmp_path / "b", latency_runs=0)
    assert calls["flops_fraction"] == 0.5 and calls["steps"] == 7 and calls["params_fraction"] is None
    assert isinstance(calls["train"], EncodedData) and isinstance(calls["val"], EncodedData)
    note = report["passes"][0]
    assert note["pass"] == "budget" and note["flops_after"] < note["flops_before"]
    fuse_note = report["passes"][1]
    assert fuse_note["flops_before"] == note["flops_after"]  # fuse starts from the budget model
    # the ledger scores the model each pass left: the stand-in's untrained one, not the source
    led, src = note["validation"], calls["source_positive"]
    positive = src.mean() < 0.5  # the stand-in's one decision
    assert led["decision_agreement"] == pytest.approx(np.mean(src == positive)) and led["decision_agreement"] <= 0.5
    assert led["accuracy"] == pytest.approx(np.mean((calls["val"].labels > 0.5) == positive))
    assert led["drop_points"] == pytest.approx(100 * (report["source_accuracy"] - led["accuracy"]))
    assert fuse_note["validation"] == pytest.approx(led)
    assert report["flops"] == fuse_note["flops_after"] <= note["flops_after"]  # minus the folded score scale
    # a step count written for SST-2 is capped at max_epochs passes over a small training split
    recipe["passes"][0] = {"budget": {"flops_fraction": 0.5, "steps": 100_000, "max_epochs": 2}}
    report = compress(model_dir, recipe, pointwise_file, tmp_path / "capped", latency_runs=0)
    per_epoch = -(-report["n_train"] // 64)
    assert calls["steps"] == 2 * per_epoch < 100_000
    assert report["passes"][0]["steps"] == 2 * per_epoch and report["passes"][0]["steps_requested"] == 100_000


def test_a_failing_budget_pass_leaves_no_output(model_dir, pointwise_file, tmp_path, monkeypatch):
    from rmcompress.compression import budget as budget_pass_module

    def budget_compress(*a, **kw):
        raise RecipeError("recipe pass 'budget' needs rmcompress.training.budget.budget_compress")

    monkeypatch.setattr(budget_pass_module, "budget_compress", budget_compress)
    with pytest.raises(RecipeError, match="recipe pass 'budget' needs rmcompress.training.budget.budget_compress"):
        compress(model_dir, Recipe.level("medium"), pointwise_file, tmp_path / "m", latency_runs=0)
    assert not (tmp_path / "m").exists()


def test_a_savedmodel_only_export_reports_no_tflite_latency(model_dir, pointwise_file, tmp_path):
    """The speed-up is of the .tflite file against the source's: without that file there is none."""
    recipe = {"name": "fuse-only", "passes": ["fuse"], "export": {"formats": ["savedmodel"]}}
    report = compress(model_dir, recipe, pointwise_file, tmp_path / "f", latency_runs=5)
    assert report["kind"] == "savedmodel" and not (tmp_path / "f" / "model.tflite").exists()
    assert not {"latency_ms_p50", "source_latency_ms_p50", "latency_speedup"} & set(report)


def test_export_strip_names_keeps_outputs_and_signature(model_dir, pointwise_file, tmp_path):
    """``export: {strip_names: true}``: a smaller .tflite with no tensor names, the same outputs
    (the pipeline's parity check runs on the stripped file), still callable by signature."""
    from ai_edge_litert.interpreter import Interpreter

    from rmcompress.runtime.tflite import TFLiteRunner, convert, strip_tensor_names
    from rmcompress.models.modeldir import load_model_dir

    recipe = {"name": "light-stripped", "passes": ["fuse", "length", {"quantise": {"mode": "dynamic"}}],
              "export": {"strip_names": True}}
    report = compress(model_dir, recipe, pointwise_file, tmp_path / "s", latency_runs=5)
    note = [n for n in report["passes"] if n["pass"] == "strip-names"][0]
    flat = (tmp_path / "s" / "model.tflite").read_bytes()
    assert len(flat) == note["bytes_after"] < note["bytes_before"] - 1000
    assert report["parity_decision_agreement"] >= 0.95  # dynamic range vs the float model
    interp = Interpreter(model_content=flat)
    assert not any(t["name"] for t in interp.get_tensor_details())
    sig = interp.get_signature_list()
    assert sig and "token_ids" in next(iter(sig.values()))["inputs"]
    ids = np.zeros((2, 16), np.int32)
    ids[:, :3] = [[2, 5, 7], [3, 4, 9]]
    assert TFLiteRunner(flat).score(ids).shape == (2,)
    # stripping alone changes no output bit
    plain = convert(load_model_dir(model_dir).model)
    np.testing.assert_array_equal(TFLiteRunner(strip_tensor_names(plain)).score(ids), TFLiteRunner(plain).score(ids))
    with pytest.raises(RecipeError, match="strip_names"):
        Recipe.from_dict({"passes": ["fuse"], "export": {"strip_names": "yes"}})


def test_val_data_and_seed_from_the_cli(model_dir, pointwise_file, tmp_path):
    """``--val-data``: validation is that file and all of ``--data`` trains; ``--seed``: the passes'
    seed (recorded), which changes the fine-tuned weights, not the split."""
    import json

    import pandas as pd

    from rmcompress.cli import main

    df = pd.read_csv(pointwise_file, sep="\t")
    train_f, val_f = tmp_path / "train.tsv", tmp_path / "val.tsv"
    df.iloc[:-30].to_csv(train_f, sep="\t", index=False)
    df.iloc[-30:].to_csv(val_f, sep="\t", index=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("passes:\n  - prune: {sparsity: 0.5, steps: 6, frequency: 1, batch_size: 8}\n"
                      "export: {formats: [tflite], latency_runs: 0}\n")
    reports = {}
    for seed in (1, 2):
        out = tmp_path / f"s{seed}"
        assert main(["compress", "--model", str(model_dir), "--recipe", str(recipe), "--data", str(train_f),
                     "--val-data", str(val_f), "--seed", str(seed), "--out", str(out), "--quiet"]) == 0
        reports[seed] = json.loads((out / "report.json").read_text())
        assert reports[seed]["n_examples"] == 30 and reports[seed]["n_train"] == len(df) - 30
        assert reports[seed]["seed"] == seed and reports[seed]["validation_data"] == str(val_f)
    assert (out.parent / "s1" / "model.tflite").read_bytes() != (out / "model.tflite").read_bytes()
    # without --val-data the model's own split applies and the seed is the split seed
    r = compress(model_dir, Recipe.from_dict({"passes": ["fuse"], "export": {"formats": ["tflite"],
                                                                            "latency_runs": 0}}),
                 pointwise_file, tmp_path / "split")
    assert r["n_examples"] + r["n_train"] == len(df) and r["seed"] == 0


def test_group_by_length_cuts_every_passes_training_batches(model_dir, pointwise_file, tmp_path, monkeypatch):
    """Recipe ``data.group_by_length``: the model's slack is found first (a transformer needs none),
    the passes' training streams are grouped and cut, and nothing stays grouped after the run."""
    import rmcompress.data.pipeline as pipeline

    calls = []
    real = pipeline.batch_by_length

    def spy(ds, batch_size, drop_remainder=False, seq_len=None, slack=0):
        calls.append(slack)
        return real(ds, batch_size, drop_remainder, seq_len, slack)

    monkeypatch.setattr(pipeline, "batch_by_length", spy)
    passes = {"passes": [{"prune": {"sparsity": 0.5, "steps": 4, "frequency": 1, "batch_size": 8}},
                         {"cluster": {"clusters": 8, "steps": 4, "batch_size": 8}}],
              "export": {"formats": ["tflite"], "latency_runs": 0}}
    lines = []
    grouped = compress(model_dir, Recipe.from_dict({**passes, "data": {"group_by_length": True}}),
                       pointwise_file, tmp_path / "grouped", log=lines.append)
    assert grouped["length_slack"] == 0 and calls == [0, 0]  # one training stream per pass
    assert any("grouped by length, 0 tokens of padding kept" in line for line in lines)
    assert pipeline.grouping(None, None, True) == (False, 0)
    calls.clear()
    plain = compress(model_dir, Recipe.from_dict(passes), pointwise_file, tmp_path / "plain")
    assert calls == [] and "length_slack" not in plain


@pytest.mark.parametrize("budget", [{"method": "taylor", "stages": 1, "steps": 4, "final_steps": 2},
                                    {"method": "gates", "gate_init": "taylor", "steps": 4}])
def test_group_by_length_with_taylor_importance(model_dir, pointwise_file, tmp_path, budget):
    """Importance scores are read eagerly at full length; the budget pass's training is grouped."""
    recipe = Recipe.from_dict({"passes": [{"budget": {"flops_fraction": 0.5, "batch_size": 8, **budget}}],
                               "data": {"group_by_length": True},
                               "export": {"formats": ["tflite"], "latency_runs": 0}})
    report = compress(model_dir, recipe, pointwise_file, tmp_path / "out")
    assert report["length_slack"] == 0 and report["flops"] < report["source_flops"]


def test_embedding_bits_4_stores_a_clustered_table_as_a_lossless_palette(model_dir, pointwise_file, tmp_path):
    """``quantise: {embedding_bits: 4}`` after ``embedding_clusters: 12``: the exported int8 file holds
    the token table as 4-bit indices into its 12 values (the report names the form), passes the
    parity check and is smaller by about half the table's bytes; the compressed model converted
    with an int8 table scores every row as the 4-bit conversion of it does."""
    from rmcompress.compression.quantise import build_tflite
    from rmcompress.models.modeldir import load_model_dir
    from rmcompress.runtime.int4 import weight_bits
    from rmcompress.runtime.tflite import TFLiteRunner
    from tests.helpers import token_ids

    recipe = {"name": "table4", "passes": [
        {"cluster": {"clusters": 16, "embedding_clusters": 12, "steps": 2}},
        {"quantise": {"mode": "int8", "calibration_samples": 32, "embedding_bits": 4}}]}
    report = compress(model_dir, recipe, pointwise_file, tmp_path / "four", latency_runs=0)
    note = next(n for n in report["passes"] if n["pass"] == "quantise-export")
    (table, form), = note["int4_tables"].items()
    assert table.endswith("token_embedding/embedding_lookup") and form == "palette (12 values)"
    written = (tmp_path / "four" / "model.tflite").read_bytes()
    assert weight_bits(written)[table] == 4 and report["parity_decision_agreement"] >= 0.95
    model = load_model_dir(tmp_path / "four" / "model").model
    rows, width = model.get_layer("token_embedding").embeddings.shape
    assert note["bytes_before_int4_tables"] - len(written) > 0.5 * rows * width - 600  # half a byte a value
    cal = token_ids(32, 16, int(rows))
    eight, _ = build_tflite(model, "int8", cal)
    four, _ = build_tflite(model, "int8", cal, embedding_bits=4)
    ids = token_ids(64, 16, int(rows), seed=3)
    np.testing.assert_array_equal(TFLiteRunner(four).score(ids), TFLiteRunner(eight).score(ids))
