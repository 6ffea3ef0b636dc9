"""``import_model()``: a user's Keras model file + its vocabulary -> an rmcompress model directory.

Reads (safely, no arbitrary code):

- the model: a Keras 3 ``.keras`` archive (read with Keras 3, ``safe_mode=True``), a tf_keras
  ``.keras`` archive (told apart by the ``keras_version`` in its ``metadata.json``) or an HDF5
  ``.h5`` file (tf_keras, or Keras 3 when the file says so); a ``Lambda`` layer or a class that is
  not built into Keras is refused by name before anything is deserialised. A model object (Keras 3
  or tf_keras) is taken as it is.
- the vocabulary: ``vocab.txt`` (one WordPiece token a line, id = line number - 1) or a Hugging Face
  ``tokenizer.json`` with a WordPiece model (its ``vocab`` and its normaliser's lowercasing and
  accent stripping). The tokenizer mode follows the vocabulary: ``[PAD] [UNK] ...`` is the
  suite's own ``wordpiece`` encoding, ``[PAD]`` first with ``[CLS]``/``[SEP]`` is ``bert``
  (``[CLS] text [SEP]``), unless ``tokenizer_mode`` says otherwise.

Writes the model directory of :mod:`rmcompress.models.modeldir`: ``model.keras`` (the model through
:func:`~rmcompress.models.convert.from_keras`), the tokenizer, ``metadata.json`` (task, loss,
source) and ``report.json`` (stage ``import``, the conversion's ``convert_max_abs_diff``,
``flops``/``params`` when the complexity registry knows every layer, else null with a note saying
which layer it does not know), and ``samples.npz`` with seeded random token ids (padded rows of
varied length) that stand in for validation data in export's parity check and int8 calibration.

Errors (:class:`ModelError`/:class:`UsageError`, one line naming the file): a missing or unreadable
model or vocabulary, a vocabulary larger than the model's ``Embedding`` can embed (its ids would
fall outside the table), a free input length without ``seq_len``.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from rmcompress._keras import keras, keras3
from rmcompress.config.choices import POINTWISE_LOSSES, TASKS, TOKENIZER_MODES
from rmcompress.data.tokenizer import CLS, PAD, SEP, UNK, RESERVED, Tokenizer, TokenizerConfig
from rmcompress.errors import ModelError, UsageError
from rmcompress.fileio import check_destination, write_json
from rmcompress.models.convert import check_ids, embedded_vocab_size, from_keras
from rmcompress.models.modeldir import SAMPLE_ROWS, config_layers, count_model, load_keras_model, save_model_dir
from rmcompress.sizes import file_sizes

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
#: classes of a saved config that are containers, not layers
CONTAINERS = ("Functional", "Sequential", "Model")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def _check_config(path: Path, config, k3: bool) -> None:
    """Refuse ``Lambda`` and classes Keras does not build in, naming the layer (before loading)."""
    layers_module = keras3().layers if k3 else keras.layers
    for name, cls, module in config_layers(config, layers_only=False):
        if cls == "Lambda":
            raise ModelError(f"{path}: layer {name!r} is a Lambda layer (arbitrary Python code); refused: "
                             "write it with built-in layers")
    for name, cls, module in config_layers(config, layers_only=False):
        if cls in CONTAINERS:
            continue
        if module and not module.startswith(("keras", "tf_keras")):
            raise ModelError(f"{path}: layer {name!r} has class {cls!r} from {module}, not a built-in "
                             "Keras layer; it cannot be loaded safely")
        if not module and not hasattr(layers_module, cls):  # HDF5 configs name no module
            raise ModelError(f"{path}: layer {name!r} has class {cls!r}, not a built-in Keras layer")


def _keras_archive_version(path: Path) -> tuple[str, dict]:
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
            config = json.loads(z.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise ModelError(f"{path}: not a readable Keras archive ({_first_line(e)})") from None
    return str(meta.get("keras_version", "")), config


def _h5_version(path: Path) -> tuple[str, dict]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", "")
    except OSError as e:
        raise ModelError(f"{path}: not a readable HDF5 model ({_first_line(e)})") from None
    if raw is None:
        raise ModelError(f"{path}: holds weights only (no model_config); save the whole model")
    raw = raw.decode() if isinstance(raw, bytes) else raw
    version = version.decode() if isinstance(version, bytes) else str(version)
    return version, json.loads(raw)


def load_user_model(path: str | os.PathLike):
    """The Keras 3 or tf_keras model in ``path`` (module docstring), loaded without running code."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: a directory; import reads a .keras or .h5 file (save the model with "
                         "model.save('model.keras'))")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelError(f"{path}: unknown model format {path.suffix or '(no suffix)'}; expected "
                         f"{', '.join(MODEL_SUFFIXES)}")
    if path.suffix.lower() == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path}: not a Keras model archive (corrupt, truncated or another format)")
        version, config = _keras_archive_version(path)
    else:
        version, config = _h5_version(path)
    k3 = version.startswith("3")
    _check_config(path, config, k3)
    if not k3 and path.suffix.lower() == ".keras":
        return load_keras_model(path)
    try:
        if k3:
            return keras3().saving.load_model(path, compile=False, safe_mode=True)
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # deserialisation errors of either Keras
        raise ModelError(f"{path}: cannot load model ({_first_line(e)})") from None


def read_vocab(path: str | os.PathLike) -> tuple[list, dict]:
    """``(tokens, settings)`` from ``vocab.txt`` or a Hugging Face WordPiece ``tokenizer.json``;
    ``settings`` holds ``lowercase``/``strip_accents`` when the file states them."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such vocabulary file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: unreadable vocabulary ({_first_line(e)})") from None
    if path.suffix.lower() != ".json":
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens = tokens[:-1]
        tokens = [t[:-1] if t.endswith("\r") else t for t in tokens]
        if not tokens:
            raise ModelError(f"{path}: empty vocabulary")
        return tokens, {}
    try:
        data = json.loads(text)
        model = data["model"]
        kind, vocab = model.get("type"), model["vocab"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"{path}: not a Hugging Face tokenizer.json ({_first_line(e)})") from None
    if kind != "WordPiece" or not isinstance(vocab, dict):
        raise ModelError(f"{path}: a {kind} tokenizer; only WordPiece vocabularies can be imported")
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise ModelError(f"{path}: WordPiece ids are not 0..{len(ids) - 1} without gaps")
    tokens = [None] * len(ids)
    for token, i in vocab.items():
        tokens[i] = token
    return tokens, _hf_normaliser(data.get("normalizer"))


def _hf_normaliser(norm) -> dict:
    """Lowercasing and accent stripping a Hugging Face normaliser applies."""
    if not isinstance(norm, dict):
        return {}
    kind = norm.get("type")
    if kind == "BertNormalizer":
        lower = bool(norm.get("lowercase", True))
        strip = norm.get("strip_accents")
        return {"lowercase": lower, "strip_accents": lower if strip is None else bool(strip)}
    if kind == "Lowercase":
        return {"lowercase": True}
    if kind == "StripAccents":
        return {"strip_accents": True}
    if kind == "Sequence":
        out = {}
        for sub in norm.get("normalizers") or []:
            out.update(_hf_normaliser(sub))
        return out
    return {}


def _tokenizer_mode(tokens: list, mode: str | None, where: Path) -> str:
    if mode is not None:
        if mode not in TOKENIZER_MODES:
            raise UsageError(f"tokenizer mode {mode!r} unknown; allowed: {', '.join(TOKENIZER_MODES)}")
        return mode
    if tokens[:2] == RESERVED:
        return "wordpiece"
    if tokens[:1] == [PAD] and all(t in tokens for t in (UNK, CLS, SEP)):
        return "bert"
    raise ModelError(f"{where}: the vocabulary starts with {tokens[:2]}; it needs {PAD} at id 0 and "
                     f"{UNK} at id 1 (or {UNK}, {CLS}, {SEP} anywhere, a BERT vocabulary)")


def random_samples(vocab_size: int, seq_len: int, rows: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """Seeded random token ids standing in for data (module docstring)."""
    return check_ids(vocab_size, seq_len, rows, seed=seed)


def import_model(model, vocab: str | os.PathLike, task: str, out: str | os.PathLike | None = None,
                 seq_len: int | None = None, lowercase: bool | None = None, loss: str | None = None,
                 truncate: str | None = None, tokenizer_mode: str | None = None,
                 overwrite: bool = False) -> dict:
    """Write the model directory ``out`` for ``model`` (a file path or a Keras model) and return its
    report (module docstring). ``lowercase`` defaults to what the vocabulary file says, else True;
    ``loss`` to ``pairwise`` for pairwise and ``bce`` (the reward is a logit) for pointwise;
    ``truncate`` (the side of a long text kept) to ``end`` for pairwise and ``start`` for pointwise."""
    if task not in TASKS:
        raise UsageError(f"task {task!r} unknown; allowed: {', '.join(TASKS)}")
    loss = loss or ("pairwise" if task == "pairwise" else "bce")
    if task == "pointwise" and loss not in POINTWISE_LOSSES:
        raise UsageError(f"loss {loss!r} unknown for a pointwise model; allowed: {', '.join(POINTWISE_LOSSES)}")
    if task == "pairwise" and loss != "pairwise":
        raise UsageError(f"--loss {loss}: a pairwise model's loss is pairwise (--loss is for pointwise models)")
    if seq_len is not None and int(seq_len) < 1:
        raise UsageError(f"--seq-len {seq_len} must be >= 1")
    if out is not None:
        check_destination(out, overwrite)
    vocab_path = Path(vocab)
    tokens, stated = read_vocab(vocab_path)
    mode = _tokenizer_mode(tokens, tokenizer_mode, vocab_path)

    source = str(model) if isinstance(model, (str, os.PathLike)) else f"<{type(model).__name__} {model.name!r}>"
    where = Path(model) if isinstance(model, (str, os.PathLike)) else model.name
    user_model = load_user_model(model) if isinstance(model, (str, os.PathLike)) else model
    try:
        scorer = from_keras(user_model, seq_len=seq_len)
    except ModelError as e:
        raise ModelError(f"{where}: {e}") from None
    length = scorer.inputs[0].shape[1]
    length = int(length) if length is not None else seq_len
    if length is None:
        raise UsageError(f"{where}: the model's input length is free (None); pass --seq-len")
    embeds = embedded_vocab_size(scorer)
    if embeds is not None and len(tokens) > embeds:
        raise ModelError(f"{vocab_path}: {len(tokens)} tokens, but the model's Embedding embeds only "
                         f"{embeds} ids; tokens {embeds}..{len(tokens) - 1} would fall outside it")

    lower = stated.get("lowercase", True) if lowercase is None else bool(lowercase)
    strip = stated.get("strip_accents", lower)
    keep = truncate or ("end" if task == "pairwise" else "start")
    try:
        tokenizer = Tokenizer(tokens, TokenizerConfig(seq_len=length, keep=keep, lowercase=lower,
                                                      strip_accents=strip, mode=mode))
    except ModelError as e:
        raise ModelError(f"{vocab_path}: {e}") from None

    notes = ["samples.npz holds random token ids (no data was given): export's parity check and int8 "
             "calibration run on them"]
    max_diff = _conversion_diff(user_model, scorer, length)
    report = {"task": task, "stage": "import", "loss": loss, "source": source,
              "keras": "keras3" if not isinstance(user_model, keras.Model) else "tf_keras",
              "seq_len": length, "vocab_size": len(tokens), "embedding_input_dim": embeds,
              "tokenizer_mode": mode, "convert_max_abs_diff": max_diff}
    try:
        report.update(count_model(scorer, where).as_dict())
    except ModelError as e:
        report.update({"flops": None, "params": None})
        notes.append(f"flops/params not counted: {e}; export and evaluate need every layer in the "
                     "complexity registry")
    report["notes"] = notes
    metadata = {"task": task, "loss": loss, "label_kind": None, "imported_from": source,
                "import": {"keras": report["keras"], "tokenizer_mode": mode}}
    if out is None:
        return report
    samples = random_samples(len(tokens) if embeds is None else min(len(tokens), embeds), length)

    def extra(tmp: Path):
        np.savez_compressed(tmp / "samples.npz", validation_ids=samples, calibration_ids=samples)
        report.update(file_sizes(tmp / "model.keras"))
        write_json(tmp / "report.json", report)

    save_model_dir(out, scorer, tokenizer, metadata, None, overwrite, extra)
    return report


def _conversion_diff(source, scorer, length: int) -> float:
    """The largest reward difference between the user's model and the tf_keras scorer on random ids
    (0.0 for a tf_keras model taken as it is)."""
    if source is scorer:
        return 0.0
    vocab = embedded_vocab_size(scorer) or 2
    ids = check_ids(vocab, length, 16, seed=1)
    a = np.asarray(source(ids, training=False), np.float64).reshape(-1)
    b = np.asarray(scorer(ids, training=False), np.float64).reshape(-1)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


__all__ = ["import_model", "load_user_model", "read_vocab", "random_samples"]
