"""The training strategy: the choice (``auto``/``none``/``mirrored``/``multiworker``), the global
batch, and multi-worker runs on 127.0.0.1 (marked ``multiworker``: each starts worker processes
of ``python -m rmcompress train`` with their own ``TF_CONFIG``) giving the one-worker result."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmcompress._keras import tf
from rmcompress.errors import UsageError
from rmcompress.training.strategy import (is_chief, make_strategy, replica_batch, resolve_choice, shard_by_data,
                                          worker_count)
from rmcompress.training.trainer import train
from tests.helpers import ROOT, tiny_config

#: largest weight difference allowed between a two-worker and a one-worker run: the same
#: arithmetic but for the order of the sums (two half-batch sums all-reduced); seen: ~5e-6
WEIGHT_TOLERANCE = 1e-4
#: a worker process that has not finished after this many seconds fails the test
WORKER_TIMEOUT = 300
#: bow (the fastest architecture), no dropout (masks are drawn per worker), 2 epochs of 2 steps
FLAGS = ["--arch", "bow", "--width", "16", "--hidden", "16", "--seq-len", "16", "--vocab-size", "300", "--epochs", "2",
         "--max-steps", "4", "--batch-size", "32", "--patience", "0", "--dropout", "0", "--quiet"]
BUDGET = ["--budget-flops", "0.5"]


def _tf_config(ports, index) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def test_auto_is_none_on_one_cpu_process_and_multiworker_with_a_cluster():
    assert resolve_choice("auto", {}) == "none"  # the tests see no GPU
    assert resolve_choice("auto", {"TF_CONFIG": _tf_config([1, 2], 1)}) == "multiworker"
    assert resolve_choice("auto", {"TF_CONFIG": _tf_config([1], 0)}) == "none"
    assert resolve_choice("mirrored", {"TF_CONFIG": "{bad"}) == "mirrored"  # TF_CONFIG is not read
    with pytest.raises(UsageError, match="TF_CONFIG, which is not set"):
        resolve_choice("multiworker", {})
    with pytest.raises(UsageError, match="key 'task.index'"):
        resolve_choice("auto", {"TF_CONFIG": _tf_config([1, 2], 5)})
    with pytest.raises(UsageError, match="--strategy 'ring' unknown"):
        resolve_choice("ring", {})


def test_the_default_strategy_is_one_chief_worker():
    assert make_strategy("none") is None and make_strategy(None) is None
    given = tf.distribute.get_strategy()
    assert make_strategy(given) is given
    assert is_chief(None) and is_chief(given) and worker_count(None) == 1
    assert replica_batch(33, None) == 33


def test_the_global_batch_must_divide_over_the_replicas(tmp_path, pointwise_file):
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert replica_batch(32, mirrored) == 16
    with pytest.raises(UsageError, match="--batch-size 33 is the global batch .* 2 replicas.* --batch-size 32"):
        train(pointwise_file, tiny_config(batch_size=33), tmp_path / "m", strategy=mirrored)
    assert not (tmp_path / "m").exists()


def test_in_memory_datasets_are_sharded_by_element():
    ds = shard_by_data(tf.data.Dataset.range(4).batch(2))
    assert ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def test_a_strategy_named_by_a_string_trains(tmp_path, pointwise_file):
    result = train(pointwise_file, tiny_config(max_steps=2), tmp_path / "m", strategy="none")
    assert result.out_dir == tmp_path / "m" and (tmp_path / "m" / "report.json").is_file()


def test_the_cli_refuses_a_bad_tf_config_in_one_line(tmp_path, pointwise_file, cli, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["h:1"]}, "task": {"type": "chief"}}))
    rc, out, err = cli("train", "--data", pointwise_file, "--out", tmp_path / "m")
    assert rc == 2 and err.strip().count("\n") == 0 and "TF_CONFIG: key 'task.type'" in err
    assert not (tmp_path / "m").exists()


# -- several worker processes -------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(tf_config: str | None, kill_at: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    for name in ("TF_CONFIG", "RMCOMPRESS_KILL_AT"):
        env.pop(name, None)
    if tf_config:
        env["TF_CONFIG"] = tf_config
    if kill_at:
        env["RMCOMPRESS_KILL_AT"] = kill_at
    return env


def _start(args, env, log: Path):
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "rmcompress", "train", *map(str, args)], env=env,
                                stdout=f, stderr=subprocess.STDOUT, cwd=str(ROOT))


def _wait(procs, logs, expect=0):
    """Wait for every process (killing all on a timeout); fail naming the worker and its log tail."""
    deadline = time.time() + WORKER_TIMEOUT
    for i, p in enumerate(procs):
        try:
            p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"worker {i} still running after {WORKER_TIMEOUT} s (did every worker start?): "
                        f"{logs[i].read_text()[-2000:]}")
    for i, p in enumerate(procs):
        if expect is not None and p.returncode != expect:
            pytest.fail(f"worker {i} exited {p.returncode}: {logs[i].read_text()[-2000:]}")


def run_workers(out: Path, data, extra=(), workers: int = 2, kill_at: dict | None = None, resume=False):
    """``rmcompress train`` as ``workers`` processes of one cluster on 127.0.0.1 (one plain process
    for ``workers=1``); ``kill_at``: ``{worker index: fault point}``. Returns the processes."""
    args = ["--data", data, "--out", out, *FLAGS, *extra, *(["--resume"] if resume else [])]
    ports = _free_ports(workers) if workers > 1 else None
    procs, logs = [], []
    for i in range(workers):
        logs.append(Path(f"{out}.worker{i}.log"))
        env = _env(_tf_config(ports, i) if ports else None, (kill_at or {}).get(i))
        procs.append(_start(args, env, logs[-1]))
    return procs, logs


def _weights(model_dir: Path) -> list[np.ndarray]:
    from rmcompress.models.modeldir import load_model_dir

    return load_model_dir(model_dir).model.get_weights()


def _same_model(a: Path, b: Path) -> float:
    """Assert ``a`` and ``b`` are the same model (shapes, report counts, weights within
    :data:`WEIGHT_TOLERANCE`); returns the largest weight difference."""
    wa, wb = _weights(a), _weights(b)
    assert [w.shape for w in wa] == [w.shape for w in wb]
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(wa, wb))
    assert worst <= WEIGHT_TOLERANCE, f"weights differ by {worst}"
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (a, b))
    for key in ("flops", "params", "steps", "epochs_run", "n_train", "n_examples"):
        assert ra[key] == rb[key], key
    assert ra.get("accuracy") == pytest.approx(rb.get("accuracy"), abs=1e-6)
    return worst


def _only_the_model_dir(out: Path) -> None:
    """The chief wrote OUT; the other worker wrote nothing there, and the backup is gone."""
    assert (out / "report.json").is_file()
    assert not Path(f"{out}.rmc-backup").exists()
    assert not [p for p in out.rglob("*") if "worker" in p.name]


#: :data:`FLAGS` as settings, for the one-worker runs made in this process
SETTINGS = dict(arch="bow", width=16, hidden=16, seq_len=16, vocab_size=300, epochs=2, max_steps=4, batch_size=32,
                patience=0, dropout=0.0)


@pytest.fixture(scope="module")
def pair_shards(tmp_path_factory, pairwise_file) -> Path:
    """The pairwise demo rows as a directory of three JSON-lines shards (streamed by ``train``)."""
    d = tmp_path_factory.mktemp("pair-shards")
    lines = pairwise_file.read_text().splitlines()
    for i in range(3):
        (d / f"part-{i}.jsonl").write_text("\n".join(lines[i::3]) + "\n")
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pointwise_file, pair_shards):
    """``{name: model directory}``: two workers and one (this process, on one device, while the
    workers run): ``plain`` on an in-memory pointwise file, ``budget`` at a FLOPs budget on a
    directory of pairwise shards read as a stream."""
    root = tmp_path_factory.mktemp("multiworker")
    out = {}
    for name, data, extra, over in (("plain", pointwise_file, [], {}),
                                    ("budget", pair_shards, BUDGET, {"budget_flops": 0.5, "task": "pairwise"})):
        one, two = root / f"{name}-1", root / f"{name}-2"
        procs, logs = run_workers(two, data, extra, workers=2)
        try:
            train(data, tiny_config(**SETTINGS, **over), one, strategy="none")
        finally:
            _wait(procs, logs)
        out[f"{name}-1"], out[f"{name}-2"] = one, two
    return out


@pytest.mark.multiworker
def test_two_workers_train_the_weights_of_one(runs):
    assert _same_model(runs["plain-1"], runs["plain-2"]) <= WEIGHT_TOLERANCE
    _only_the_model_dir(runs["plain-2"])


@pytest.mark.multiworker
def test_two_workers_at_a_budget_keep_the_gates_and_flops_of_one(runs):
    one, two = runs["budget-1"], runs["budget-2"]
    _same_model(one, two)  # same shrunk shapes: the same gates closed
    r1, r2 = (json.loads((d / "report.json").read_text()) for d in (one, two))
    assert r1["flops"] == r2["flops"] < r2["dense_flops"]
    logs = [pd.read_csv(d / "complexity_log.csv") for d in (one, two)]
    assert len(logs[0]) == len(logs[1]) > 0
    for column in ("expected_flops_fraction", "flops", "lambda_flops"):  # per step: gates and multipliers
        np.testing.assert_allclose(logs[0][column], logs[1][column], atol=WEIGHT_TOLERANCE, err_msg=column)


@pytest.mark.multiworker
def test_a_job_that_lost_a_worker_resumes_to_the_same_model(tmp_path, pair_shards, runs):
    """Pairwise shards streamed to two workers at a budget; one is killed, the job resumes to the
    one-worker model."""
    out = tmp_path / "m"
    procs, logs = run_workers(out, pair_shards, BUDGET, kill_at={1: "train:epoch_end:1"})
    chief, worker = procs
    try:
        worker.wait(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        worker.kill()
    assert worker.returncode == -signal.SIGKILL, logs[1].read_text()[-2000:]
    # the job lost a worker: the chief blocks in its next collective; stop it once its epoch-1
    # checkpoint is written (a cluster manager restarts the whole job)
    checkpoint = Path(f"{out}.rmc-backup") / "keras" / "chief" / "checkpoint"
    deadline = time.time() + 60
    while not checkpoint.is_file() and chief.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.is_file(), logs[0].read_text()[-2000:]
    chief.kill()
    chief.wait()
    assert not out.exists()
    assert (Path(f"{out}.rmc-backup") / "state-0.json").is_file()  # the chief's epoch state

    procs, logs = run_workers(out, pair_shards, BUDGET, resume=True)
    _wait(procs, logs)
    report = json.loads((out / "report.json").read_text())
    assert report["resumed_after_epoch"] == 1
    _same_model(runs["budget-1"], out)
    _only_the_model_dir(out)
