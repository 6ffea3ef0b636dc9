"""``rmcompress import``: a user's Keras file + vocabulary -> a model directory that export and
evaluate take; bad input exits 2 with one line naming the file."""
import json
import zipfile

import numpy as np
import pytest

from rmcompress._keras import keras, keras3
from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
from rmcompress.models.modeldir import load_model_dir, load_samples

SEQ = 16


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, pointwise_file):
    """A vocab.txt learnt from the data, a Keras 3 ``.keras`` scorer over it, a tf_keras ``.h5`` one."""
    import pandas as pd

    d = tmp_path_factory.mktemp("user")
    texts = pd.read_csv(pointwise_file, sep="\t")["sentence"].tolist()
    tok = Tokenizer.train(texts, vocab_size=120, config=TokenizerConfig(seq_len=SEQ))
    (d / "vocab.txt").write_text("\n".join(tok.vocabulary) + "\n", encoding="utf-8")
    k3 = keras3()
    ids = k3.Input((SEQ,), dtype="int32", name="ids")
    x = k3.layers.Embedding(tok.vocab_size, 16, mask_zero=True)(ids)
    y = k3.layers.LayerNormalization()(x + k3.layers.MultiHeadAttention(2, 8)(x, x))
    y = k3.layers.LayerNormalization()(y + k3.layers.Dense(16)(k3.layers.Dense(8, activation="relu")(y)))
    k3.Model(ids, k3.layers.Dense(1)(k3.layers.GlobalAveragePooling1D()(y))).save(d / "block.keras")
    tf_ids = keras.Input((SEQ,), dtype="int32")
    h = keras.layers.Conv1D(8, 3, activation="relu")(keras.layers.Embedding(tok.vocab_size, 8)(tf_ids))
    keras.Model(tf_ids, keras.layers.Dense(1)(keras.layers.GlobalMaxPooling1D()(h))).save(d / "cnn.h5")
    return d


def one_line_error(rc, err, *words):
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_keras3_file_imports_exports_and_evaluates(cli, user_files, pointwise_file, tmp_path):
    out, exp = tmp_path / "m", tmp_path / "e"
    rc, stdout, err = cli("import", "--model", user_files / "block.keras", "--vocab", user_files / "vocab.txt",
                          "--task", "pointwise", "--out", out)
    assert rc == 0, err
    assert "random token ids" in err  # the note on samples.npz
    report = json.loads((out / "report.json").read_text())
    assert report["stage"] == "import" and report["keras"] == "keras3" and report["seq_len"] == SEQ
    assert report["convert_max_abs_diff"] <= 1e-5 and report["flops"] > 0 and report["params"] > 0
    bundle = load_model_dir(out)
    assert bundle.task == "pointwise" and bundle.tokenizer.seq_len == SEQ
    assert bundle.tokenizer.vocabulary == (user_files / "vocab.txt").read_text().splitlines()
    samples = load_samples(out)["validation_ids"]
    assert samples.shape[1] == SEQ and samples.max() < bundle.tokenizer.vocab_size

    source = keras3().saving.load_model(user_files / "block.keras")
    ids = bundle.tokenizer.encode(["a fine day", "the worst film ever made"])
    np.testing.assert_allclose(bundle.model.predict(ids, verbose=0), np.asarray(source(ids)), atol=1e-5)

    assert cli("export", "--model", out, "--out", exp, "--latency-runs", "2")[0] == 0
    assert json.loads((exp / "report.json").read_text())["parity_max_abs_diff"] <= 1e-4
    rc, stdout, err = cli("evaluate", "--model", exp, "--data", pointwise_file, "--json", "--latency-runs", "2",
                          "--max-examples", "50")
    assert rc == 0, err
    ev = json.loads(stdout)
    assert ev["n_examples"] == 50 and 0 <= ev["accuracy"] <= 1 and ev["flops"] == report["flops"]


def test_tf_keras_h5_goes_through_the_same_command(cli, user_files, tmp_path):
    out = tmp_path / "m"
    rc, _, err = cli("import", "--model", user_files / "cnn.h5", "--vocab", user_files / "vocab.txt",
                     "--task", "pairwise", "--out", out)
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["keras"] == "tf_keras" and report["loss"] == "pairwise"
    bundle = load_model_dir(out)
    assert bundle.task == "pairwise" and bundle.tokenizer.config.keep == "end"
    rc, _, err = cli("import", "--model", user_files / "cnn.h5", "--vocab", user_files / "vocab.txt",
                     "--task", "pairwise", "--out", out)
    one_line_error(rc, err, str(out), "--overwrite")


def test_hugging_face_tokenizer_json(cli, user_files, tmp_path):
    base = (user_files / "vocab.txt").read_text().splitlines()
    bert = ["[PAD]"] + base[2:-2] + ["[UNK]", "[CLS]", "[SEP]"]  # a BERT layout, as many tokens as the Embedding
    hf = {"model": {"type": "WordPiece", "vocab": {t: i for i, t in enumerate(bert[:-1])}},
          "normalizer": {"type": "BertNormalizer", "lowercase": False, "strip_accents": None}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(hf))
    args = ["--model", user_files / "block.keras", "--vocab", tmp_path / "tokenizer.json", "--task", "pointwise",
            "--out", tmp_path / "m"]
    one_line_error(*cli("import", *args)[::2], "tokenizer.json", "[PAD]")  # no [SEP]: neither layout
    hf["model"]["vocab"] = {t: i for i, t in enumerate(bert)}
    (tmp_path / "tokenizer.json").write_text(json.dumps(hf))
    rc, _, err = cli("import", *args)
    assert rc == 0, err
    tok = load_model_dir(tmp_path / "m").tokenizer
    assert tok.mode == "bert" and tok.config.lowercase is False and tok.config.strip_accents is False
    assert tok.vocabulary == bert
    hf["model"]["type"] = "BPE"
    (tmp_path / "tokenizer.json").write_text(json.dumps(hf))
    one_line_error(*cli("import", *args, "--overwrite")[::2], "tokenizer.json", "a BPE tokenizer")


def test_bad_inputs_exit_2_naming_the_file(cli, user_files, tmp_path):
    vocab = user_files / "vocab.txt"
    args = ["--task", "pointwise", "--out", tmp_path / "m"]
    one_line_error(*cli("import", "--model", tmp_path / "none.keras", "--vocab", vocab, *args)[::2],
                   "none.keras", "no such file")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    one_line_error(*cli("import", "--model", tmp_path / "junk.keras", "--vocab", vocab, *args)[::2],
                   "junk.keras", "not a Keras model archive")
    one_line_error(*cli("import", "--model", user_files / "block.keras", "--vocab", tmp_path / "v.txt", *args)[::2],
                   "v.txt", "no such vocabulary file")
    big = vocab.read_text().splitlines() + [f"extra{i}" for i in range(5)]
    (tmp_path / "big.txt").write_text("\n".join(big) + "\n")
    one_line_error(*cli("import", "--model", user_files / "block.keras", "--vocab", tmp_path / "big.txt", *args)[::2],
                   "big.txt", "embeds only")
    assert not (tmp_path / "m").exists()


def test_lambda_and_free_length_are_refused(cli, user_files, tmp_path):
    k3 = keras3()
    ids = k3.Input((SEQ,), dtype="int32")
    x = k3.layers.Lambda(lambda t: t * 2, name="doubler")(k3.layers.Embedding(200, 4)(ids))
    k3.Model(ids, k3.layers.Dense(1)(k3.layers.GlobalAveragePooling1D()(x))).save(tmp_path / "lam.keras")
    with zipfile.ZipFile(tmp_path / "lam.keras") as z:
        assert "Lambda" in z.read("config.json").decode()
    args = ["--vocab", user_files / "vocab.txt", "--task", "pointwise", "--out", tmp_path / "m"]
    one_line_error(*cli("import", "--model", tmp_path / "lam.keras", *args)[::2], "lam.keras", "'doubler'", "Lambda")
    tf_ids = keras.Input((SEQ,), dtype="int32")
    h = keras.layers.Lambda(lambda t: t * 2, name="doubler")(keras.layers.Embedding(200, 4)(tf_ids))
    keras.Model(tf_ids, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(h))).save(tmp_path / "lam.h5")
    one_line_error(*cli("import", "--model", tmp_path / "lam.h5", *args)[::2], "lam.h5", "'doubler'", "Lambda")

    free = k3.Input((None,), dtype="int32")
    pooled = k3.layers.GlobalAveragePooling1D()(k3.layers.Embedding(200, 4)(free))
    k3.Model(free, k3.layers.Dense(1)(pooled)).save(tmp_path / "free.keras")
    one_line_error(*cli("import", "--model", tmp_path / "free.keras", *args)[::2], "free.keras", "--seq-len")
    assert cli("import", "--model", tmp_path / "free.keras", *args, "--seq-len", "20")[0] == 0
    assert load_model_dir(tmp_path / "m").model.input_shape == (None, 20)


def test_layers_outside_the_registry_import_without_counts_and_export_names_them(cli, user_files, tmp_path):
    ids = keras.Input((SEQ,), dtype="int32")
    x = keras.layers.UnitNormalization(name="my_norm")(keras.layers.Embedding(200, 4)(ids))
    keras.Model(ids, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x))).save(tmp_path / "unorm.h5")
    out = tmp_path / "m"
    rc, _, err = cli("import", "--model", tmp_path / "unorm.h5", "--vocab", user_files / "vocab.txt",
                     "--task", "pointwise", "--out", out)
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["flops"] is None and report["params"] is None
    assert any("'my_norm' of class UnitNormalization" in note for note in report["notes"])
    rc, _, err = cli("export", "--model", out, "--out", tmp_path / "e")
    one_line_error(rc, err, "'my_norm' of class UnitNormalization", "complexity registry")
