"""Bad models and artifacts -> exit code 2 and one line naming the file (and the layer, where one is
to blame): incomplete model directories, a model of the other task, layers unknown to Keras or to
the complexity registry, Lambda layers (refused by safe mode), corrupt ``model.keras``/``.tflite``/
``samples.npz``/SavedModel files."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tests.helpers import rmcompress_subprocess


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def point_dir(trained_models):
    return trained_models["transformer"].out_dir


@pytest.fixture(scope="module")
def pair_dir(trained_models):
    return trained_models["pairwise"].out_dir


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, point_dir):
    from rmcompress.export.exporter import export_model

    out = tmp_path_factory.mktemp("exp") / "e"
    export_model(point_dir, out, formats="tflite,savedmodel", latency_runs=0)
    return out


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _evaluate(cli, model, data):
    return cli("evaluate", "--model", model, "--data", data, "--latency-runs", "0")


# -- incomplete directories -----------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["vocab.txt", "tokenizer_settings.json", "metadata.json", "model.keras"])
def test_directory_without_a_part(cli, tmp_path, point_dir, pointwise_file, missing):
    d = _copy(point_dir, tmp_path / "m")
    os.remove(d / missing)
    rc, _, err = cli("export", "--model", d, "--out", tmp_path / "e", "--latency-runs", "0")
    line = _one_line(err)
    assert rc == 2 and str(d) in line and (missing in line or "not a model directory" in line), line
    rc, _, err = _evaluate(cli, d, pointwise_file)
    assert rc == 2 and str(d) in _one_line(err)
    assert not (tmp_path / "e").exists()


def test_not_a_model_at_all(cli, tmp_path, pointwise_file):
    rc, _, err = _evaluate(cli, tmp_path / "nothing", pointwise_file)
    assert rc == 2 and "nothing: no such file or directory" in _one_line(err)
    (tmp_path / "empty").mkdir()
    rc, _, err = _evaluate(cli, tmp_path / "empty", pointwise_file)
    assert rc == 2 and "not a model directory, SavedModel, export directory or .tflite file" in _one_line(err)


@pytest.mark.parametrize("name, content, expect", [
    ("metadata.json", "{not json", "metadata.json: invalid JSON"),
    ("metadata.json", '{"format": "something else"}', "metadata.json: not rmcompress model metadata"),
    ("tokenizer.json", '{"seq_len": "many"}', "tokenizer.json: invalid tokenizer settings"),
    ("tokenizer.json", "[1, 2]", "tokenizer.json: invalid tokenizer settings (expected a JSON object)"),
    ("tokenizer.json", '{"seq_len": 16, "keep": "middle"}', "tokenizer.json: invalid tokenizer settings"),
    ("vocab.txt", "a\nb\n", "vocab.txt: vocabulary must start with ['[PAD]', '[UNK]']"),
    ("tokenizer.json", '{"seq_len": 99}', "takes inputs of shape (None, 16), but the tokeniser"),
    ("tokenizer_settings.json", '{"seq_len": "many"}', "tokenizer_settings.json: invalid tokenizer settings"),
    ("tokenizer_settings.json", '{"seq_len": 99}', "but the tokeniser (" ),
])
def test_damaged_side_files(cli, tmp_path, point_dir, pointwise_file, name, content, expect):
    d = _copy(point_dir, tmp_path / "m")
    if name == "tokenizer.json":  # a directory from before tokenizer_settings.json: settings in tokenizer.json
        os.remove(d / "tokenizer_settings.json")
    (d / name).write_text(content)
    rc, _, err = _evaluate(cli, d, pointwise_file)
    assert rc == 2 and expect in _one_line(err), err


# -- the other task -------------------------------------------------------------------------------
def test_model_of_the_other_task(cli, point_dir, pair_dir, pointwise_file, pairwise_file):
    rc, _, err = _evaluate(cli, point_dir, pairwise_file)
    line = _one_line(err)
    assert rc == 2 and "looks like pairwise data" in line and f"{point_dir} is a pointwise model" in line
    rc, _, err = _evaluate(cli, pair_dir, pointwise_file)
    line = _one_line(err)
    assert rc == 2 and "looks like pointwise data" in line and f"{pair_dir} is a pairwise model" in line


def test_binary_model_on_labels_outside_0_1(cli, tmp_path, point_dir):
    data = tmp_path / "three.tsv"
    data.write_text("sentence\tlabel\ngood film\t1\nfine film\t3\n")
    rc, _, err = _evaluate(cli, point_dir, data)
    assert rc == 2 and "three.tsv:3: label 3 is out of range for a binary task" in _one_line(err)


# -- layers ---------------------------------------------------------------------------------------
def _save_with(tmp_path, point_dir, name, build):
    from rmcompress._keras import keras
    from rmcompress.models.modeldir import load_model_dir, save_model_dir

    bundle = load_model_dir(point_dir)
    inp = keras.Input((bundle.tokenizer.seq_len,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(bundle.tokenizer.vocab_size, 4)(inp)
    model = keras.Model(inp, keras.layers.Dense(1)(build(keras, x)))
    return save_model_dir(tmp_path / name, model, bundle.tokenizer, bundle.metadata,
                          extra=lambda d: shutil.copy(point_dir / "samples.npz", d))


def test_layer_unknown_to_the_registry_names_layer_and_class(cli, tmp_path, point_dir, pointwise_file):
    d = _save_with(tmp_path, point_dir, "unorm", lambda keras, x: keras.layers.UnitNormalization(name="my_norm")(x))
    for args in (("export", "--model", d, "--out", tmp_path / "e"),
                 ("evaluate", "--model", d, "--data", pointwise_file, "--latency-runs", "0")):
        rc, _, err = cli(*args)
        line = _one_line(err)
        assert rc == 2 and str(d) in line and "layer 'my_norm' of class UnitNormalization is unknown" in line, line


def test_unregistered_custom_class_names_layer_and_class(cli, tmp_path, point_dir, pointwise_file):
    from rmcompress._keras import keras

    @keras.utils.register_keras_serializable("TestOnly")
    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x

    def build(keras, x):
        return keras.layers.GlobalAveragePooling1D()(Mystery(name="mystery_layer")(x))

    d = _save_with(tmp_path, point_dir, "custom", build)
    del keras.saving.get_custom_objects()["TestOnly>Mystery"]
    rc, _, err = _evaluate(cli, d, pointwise_file)
    line = _one_line(err)
    assert rc == 2 and "layer 'mystery_layer' has class 'Mystery'" in line and "model.keras" in line


def test_lambda_layer_is_refused_by_safe_mode(cli, tmp_path, point_dir, pointwise_file):
    """A Lambda layer holds Python bytecode: loading it would run code from the file."""
    from rmcompress._keras import tf
    from rmcompress.errors import ModelError
    from rmcompress.models.modeldir import load_model_dir

    d = _save_with(tmp_path, point_dir, "lam",
                   lambda keras, x: keras.layers.Lambda(lambda t: tf.reduce_mean(t, axis=1), name="lam")(x))
    with pytest.raises(ModelError, match=r"layer 'lam' is a Lambda layer .* safe mode"):
        load_model_dir(d)
    rc, _, err = cli("export", "--model", d, "--out", tmp_path / "e")
    assert rc == 2 and "Lambda" in _one_line(err)


# -- corrupt files --------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_model_keras(cli, tmp_path, point_dir, pointwise_file, how):
    d = _copy(point_dir, tmp_path / "m")
    raw = (d / "model.keras").read_bytes()
    (d / "model.keras").write_bytes(raw[: len(raw) // 2] if how == "truncated" else b"PK\x03\x04 not really")
    rc, _, err = _evaluate(cli, d, pointwise_file)
    assert rc == 2 and f"{d / 'model.keras'}: not a Keras model archive" in _one_line(err)


@pytest.mark.parametrize("how", ["text", "no-magic", "truncated", "scrambled"])
def test_file_that_is_not_a_tflite_model(cli, tmp_path, export_dir, pointwise_file, how):
    d = _copy(export_dir, tmp_path / "e")
    flat = (d / "model.tflite").read_bytes()
    bad = {"text": b"hello, I am not a model", "no-magic": b"\0" * 64,
           "truncated": flat[: len(flat) // 3],
           "scrambled": flat[:8] + bytes(np.random.RandomState(0).randint(0, 256, len(flat) - 8, dtype=np.uint8))}[how]
    (d / "model.tflite").write_bytes(bad)
    rc, _, err = _evaluate(cli, d / "model.tflite", pointwise_file)
    line = _one_line(err)
    assert rc == 2 and "model.tflite" in line
    assert "not a TFLite file" in line or "not a loadable TFLite model" in line, line


def test_mutated_tflite_bytes_raise_model_error(export_dir):
    """Byte flips inside a real flatbuffer: the LiteRT runner raises ModelError or runs, nothing else."""
    from rmcompress.errors import ModelError
    from rmcompress.runtime.tflite import TFLiteRunner

    flat = (export_dir / "model.tflite").read_bytes()
    rng = np.random.RandomState(1)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(60):
        b = bytearray(flat)
        for j in rng.randint(8, len(b), size=rng.randint(1, 20)):
            b[j] = rng.randint(256)
        try:
            TFLiteRunner(bytes(b)).score(np.ones((2, 16), np.int32))
            outcomes["ok"] += 1
        except ModelError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0


def test_corrupt_savedmodel(cli, tmp_path, export_dir, pointwise_file):
    d = _copy(export_dir, tmp_path / "e")
    (d / "saved_model" / "saved_model.pb").write_bytes(b"junk")
    rc, _, err = _evaluate(cli, d / "saved_model", pointwise_file)
    assert rc == 2 and "saved_model: cannot load SavedModel" in _one_line(err)


@pytest.mark.parametrize("how", ["junk", "pickled"])
def test_corrupt_or_pickled_samples_are_refused(cli, tmp_path, point_dir, how):
    d = _copy(point_dir, tmp_path / "m")
    if how == "junk":
        (d / "samples.npz").write_bytes(b"junk")
    else:  # object arrays are pickles: np.load(allow_pickle=False) must refuse them
        np.savez(d / "samples.npz", validation_ids=np.array([{"a": 1}], dtype=object),
                 calibration_ids=np.zeros((1, 16), np.int32))
    rc, _, err = cli("export", "--model", d, "--out", tmp_path / "e")
    line = _one_line(err)
    assert rc == 2 and "samples.npz" in line
    assert not (tmp_path / "e").exists()


def test_real_process_not_a_tflite_file(tmp_path, pointwise_file):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"definitely not a flatbuffer")
    proc = rmcompress_subprocess("evaluate", "--model", bad, "--data", pointwise_file)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"rmcompress evaluate: error: {bad}: not a TFLite file (no TFL3 identifier)"
