"""Real data from ../shared/data (skipped with a reason when absent): loading and a small run each."""
import numpy as np
import pytest

from rmcompress.data.loaders import load_data
from rmcompress.export.exporter import export_model
from rmcompress.training.trainer import train

from tests.helpers import shared_data, tiny_config

pytestmark = pytest.mark.realdata  # reads ../shared/data


@pytest.fixture(scope="module")
def sst2():
    return load_data(shared_data("sst2/train.tsv"), "pointwise")


@pytest.fixture(scope="module")
def hh():
    return load_data(shared_data("hh-rlhf-harmless/pairs.jsonl.gz"), "pairwise")


def test_sst2_loads_as_binary(sst2):
    assert len(sst2) == 67349 and sst2.label_kind == "binary"
    assert 0.5 < sst2.labels.mean() < 0.6


def test_hh_loads_as_pairs(hh):
    assert len(hh) + sum(hh.skipped.values()) == 1850
    assert all("Assistant:" in c for c in hh.chosen[:20])


def test_small_sst2_run_learns_and_exports(sst2, tmp_path):
    idx = np.random.RandomState(0).choice(len(sst2), 3000, replace=False)
    res = train(sst2.subset(idx), tiny_config(arch="bow", width=32, hidden=32, vocab_size=2000, seq_len=32,
                                              max_steps=None, epochs=3, learning_rate=3e-3), tmp_path / "m", verbose=0)
    assert res.report["accuracy"] > 0.6
    rep = export_model(res.out_dir, tmp_path / "e", formats="tflite", latency_runs=0)
    assert rep["parity_max_abs_diff"] <= 1e-4


def test_small_hh_run_keeps_the_end(hh, tmp_path):
    res = train(hh.subset(np.arange(300)), tiny_config(task="pairwise", seq_len=64, vocab_size=1000), None, verbose=0)
    assert 0.0 <= res.report["pairwise_accuracy"] <= 1.0
    last = res.bundle.tokenizer.decode(res.train_data.chosen[0])
    assert "assistant" in last.split()[-60:] or len(last.split()) < 64
