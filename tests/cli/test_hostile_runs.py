"""Real runs at the edges of what the rule table accepts: exit 0, a finite model, exactly
``--max-steps`` steps, strict JSON; and the failures only a loaded model reveals, one line each."""
from __future__ import annotations

import json
import os
import shutil
import threading

import numpy as np
import pytest

from tests.helpers import TINY_TRAIN_FLAGS


def strict_json(path_or_text):
    """Parse refusing ``NaN``/``Infinity`` (what strict JSON parsers do)."""
    text = path_or_text.read_text() if hasattr(path_or_text, "read_text") else path_or_text

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _flags(**changes):
    flags = list(TINY_TRAIN_FLAGS)
    for flag, value in changes.items():
        name = "--" + flag.replace("_", "-")
        if name in flags:
            flags[flags.index(name) + 1] = str(value)
        else:
            flags += [name, str(value)]
    return flags


def _finite_weights(model_dir) -> bool:
    from rmcompress.models.modeldir import load_model_dir

    return all(np.all(np.isfinite(w)) for w in load_model_dir(model_dir).model.get_weights())


def test_boundary_values_from_a_pipe_train_exactly_max_steps(cli, pointwise_file, tmp_path):
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            f.write(pointwise_file.read_bytes())

    threading.Thread(target=feed, daemon=True).start()
    out = tmp_path / "edge"
    rc, _, err = cli("train", "--task", "pointwise", "--data", f"/dev/fd/{r}", "--out", out,
                     *_flags(max_steps=7, warmup_fraction=1, seed=2**31 - 1, vocab_size=64, weight_decay=0,
                             center_coefficient=0, dropout=0))
    assert rc == 0, err
    report = strict_json(out / "report.json")
    assert report["steps"] == 7 and report["accuracy"] is not None
    assert _finite_weights(out)


def test_gated_max_steps_are_exact_and_undefined_metrics_are_null(cli, pointwise_file, tmp_path):
    out = tmp_path / "gated"
    rc, _, err = cli("train", "--task", "pointwise", "--data", pointwise_file, "--out", out,
                     *_flags(max_steps=11, flops_weight=0.5))
    assert rc == 0, err
    report = strict_json(out / "report.json")
    assert report["steps"] + report["finetune_steps"] == 11
    assert _finite_weights(out)
    single = tmp_path / "single.tsv"
    single.write_text("text\tlabel\n" + "".join(f"a good film {i}\t1\n" for i in range(12)))
    rc, stdout, err = cli("evaluate", "--model", out, "--data", single, "--latency-runs", "0", "--json")
    assert rc == 0, err
    report = strict_json(stdout)
    assert report["auc"] is None and 0.0 <= report["accuracy"] <= 1.0


def test_a_vocabulary_from_another_model_is_named_before_scoring(cli, trained_models, pointwise_file, tmp_path):
    from rmcompress.evaluation.artifacts import open_artifact
    from rmcompress.errors import ModelError

    model = tmp_path / "mixed"
    shutil.copytree(trained_models["bow"].out_dir, model)
    with open(model / "vocab.txt", "a") as f:
        f.write("".join(f"zzextra{i}\n" for i in range(50)))
    rc, _, err = cli("evaluate", "--model", model, "--data", pointwise_file, "--latency-runs", "0")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{model}/vocab.txt defines" in err and f"{model}/model.keras has a token table of" in err
    meta = json.loads((model / "metadata.json").read_text())
    del meta["arch"]  # no size stated: the lookup itself is tried before scoring
    (model / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=rf"^{model}/vocab.txt defines \d+ token ids but {model} has a token table "
                                         r"of \d+ rows: the vocabulary does not belong to this model$"):
        open_artifact(model)
