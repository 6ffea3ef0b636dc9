"""Helpers the tests share (the fixtures are in ``conftest.py``): tiny training settings, the
real-data locator, the CLI in a subprocess, a compression state to run passes on.

Real data lives in ``../shared/data`` beside the project (CI has it); tests that need it call
:func:`shared_data`, which skips with a clear reason when it is absent.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rmcompress._keras import tf
from rmcompress.config.training import TrainConfig
from rmcompress.data import synthetic as S
from rmcompress.models.structure import count

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()


def shared_data(relative: str) -> Path:
    """Path of a real data file, or skip the test with the reason."""
    p = SHARED_DATA / relative
    if not p.exists():
        pytest.skip(f"real data {p} not found (CI provides ../shared/data beside the project)")
    return p


TINY = dict(width=16, depth=1, heads=2, ffn=32, filters=8, hidden=16, seq_len=16, vocab_size=300,
            epochs=1, max_steps=6, batch_size=32, patience=0)


def tiny_config(**overrides):
    """:data:`TINY` training settings, with ``overrides`` (flat names)."""
    return TrainConfig.from_flat(**{**TINY, **overrides})


TINY_TRAIN_FLAGS = ["--width", "16", "--depth", "1", "--heads", "2", "--ffn", "32", "--filters", "8",
                    "--hidden", "16", "--seq-len", "16", "--vocab-size", "300", "--epochs", "1",
                    "--max-steps", "6", "--batch-size", "32", "--patience", "0"]


def rmcompress_subprocess(*args, kill_at: str | None = None, timeout: float = 240, env=None):
    """Run ``python -m rmcompress ARGS`` in a fresh process; ``kill_at`` sets ``RMCOMPRESS_KILL_AT``
    (see ``rmcompress.faults``). Returns the ``CompletedProcess`` (returncode -9 when killed)."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    e.pop("RMCOMPRESS_KILL_AT", None)
    if kill_at:
        e["RMCOMPRESS_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "rmcompress", *[str(a) for a in args]], env=e,
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


def transformer_state(tmp_path_factory, data_file, max_steps: int = 4):
    """A tiny transformer trained ``max_steps`` steps on ``data_file``, as the
    :class:`~rmcompress.compression.state.CompressState` a pass receives."""
    from rmcompress.compression.state import prepare_state
    from rmcompress.training.trainer import train

    r = train(data_file, tiny_config(arch="transformer", max_steps=max_steps), tmp_path_factory.mktemp("m") / "m",
              verbose=0)
    return prepare_state(r.bundle, data_file)


def run_pass(name: str, state, **settings):
    """Run the registered pass ``name`` on ``state`` with ``settings`` (the rest: defaults);
    return ``(state, notes)``."""
    from rmcompress.compression.passes import PASSES

    cls = PASSES[name]
    result = cls()(state, cls.Settings(**settings))
    return result.state, result.notes


def event_tags(root) -> dict:
    """``{run: {tag: number of values}}`` of every TensorBoard event file under ``root`` (``run``:
    the file's folder relative to ``root``, as TensorBoard names it)."""
    out: dict = {}
    for f in sorted(Path(root).rglob("events.out.tfevents.*")):
        run = out.setdefault(f.parent.relative_to(root).as_posix(), {})
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for value in event.summary.value:
                run[value.tag] = run.get(value.tag, 0) + 1
    return out


# -- small models and token ids (compression and registry tests) ------------------------------
SMALL = dict(vocab_size=60, seq_len=16, width=16, depth=2, heads=2, head_dim=8, ffn=32, filters=8, hidden=16,
             dropout=0.1)


def randomize(model, seed=0):
    """Random weights everywhere (normalisation scales around 1, variances positive)."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        vals = []
        for w in layer.weights:
            n = w.name.split("/")[-1].split(":")[0]
            if n in ("gamma", "moving_variance"):
                vals.append(1.0 + 0.5 * rng.rand(*w.shape))
            else:
                vals.append(0.3 * rng.randn(*w.shape))
        if vals:
            layer.set_weights([v.astype(np.float32) for v in vals])
    return model


def token_ids(n=64, seq_len=16, vocab=60, seed=1):
    rng = np.random.RandomState(seed)
    ids = rng.randint(2, vocab, size=(n, seq_len)).astype(np.int32)
    lengths = rng.randint(1, seq_len + 1, size=n)
    ids[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
    return ids


# -- the registry against TensorFlow's profiler ------------------------------------------------
MATMUL_OPS = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Conv2D", "DepthwiseConv2dNative"}
RECURRENT_TYPES = {"LSTM", "GRU", "SimpleRNN", "Bidirectional"}


COMPARISON_OPS = {"NotEqual", "Equal", "Greater", "GreaterEqual", "Less", "LessEqual"}


def profile_by_layer(model) -> dict:
    """``{layer name: {op type: FLOPs}}`` from tf.compat.v1.profiler on the frozen batch-1 graph."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    seq_len = model.input_shape[1]
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, seq_len], tf.int32 if model.input.dtype == tf.int32 else tf.float32))
    graph = convert_variables_to_constants_v2(fn).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph, options=opts, cmd="graph")
    out: dict = {}

    def walk(node):
        if node.float_ops:
            parts = node.name.split("/")
            layer = parts[1] if len(parts) > 2 else parts[0]
            op_type = graph.get_operation_by_name(node.name).type
            out.setdefault(layer, {}).setdefault(op_type, 0)
            out[layer][op_type] += node.float_ops
        for child in node.children:
            walk(child)

    walk(prof)
    return out


def check_registry_matches_profiler(model):
    """Per layer: the profiler's matmul-class ops equal the registry's ``matmul`` part, and its other
    counted arithmetic ops equal the registry's ``bias + elementwise`` parts.

    Excluded, with the reason:
    - ``Einsum``: the profiler has no FLOPs rule for it and silently counts 0 (EinsumDense, Keras
      MultiHeadAttention); the registry counts it, so it is the reference there;
    - ``Relu`` and other activations, ``Max`` (reduce-max): no profiler rule (counted 0);
    - ``Softmax``: the profiler counts 5 per element (max, subtract, exp, sum, divide), the registry
      3 (exp, sum, divide): a convention, checked as exactly 5/3 of ours;
    - LayerNormalization: TF decomposes it into mean, squared difference (2), variance, rsqrt and
      five broadcast products/sums (9 per element + 3 per position); the registry counts the 7
      arithmetic steps of the formula per element;
    - comparisons (``NotEqual`` of the padding mask): 0 FLOPs by convention;
    - BatchNormalization: TF folds ``a = gamma * rsqrt(var + eps)``, ``b = beta - mean * a`` on every
      call (var + eps, rsqrt counted 2, the gamma product when ``scale``, mean * a, beta - or negate:
      5 or 6 per channel); the registry folds once, so the profiler's count is its ``norm`` part
      (``x * a + b``) plus exactly that per-channel fold;
    - ``MaxPool``: the profiler counts ``pool_size`` per output, the registry ``pool_size - 1`` (a
      reduction over ``pool_size`` elements); checked as exactly ``pool_size / (pool_size - 1)`` of ours;
    - recurrent layers are compared when unrolled (``unroll=True``: every step's ops in the graph,
      the same arithmetic); a model with a recurrent layer that is not unrolled is refused: its steps
      run in a while loop the profiler does not enter, and every shape after it is unknown to the
      profiler, which then counts 0 for the layers downstream too.
    """
    prof = profile_by_layer(model)
    table = count(model).table.set_index("layer")
    for name, row in table.iterrows():
        ops = prof.get(name, {})
        layer = model.get_layer(name)
        if row["type"] in RECURRENT_TYPES:
            assert getattr(layer, "forward_layer", layer).unroll, f"{name}: unroll it to compare with the profiler"
        assert sum(v for k, v in ops.items() if k in MATMUL_OPS) == row["flops_matmul"], (name, ops)
        if row["type"] == "LayerNormalization":
            continue
        if row["type"] == "BatchNormalization":
            fold = int(layer.input_shape[-1]) * (5 + int(bool(layer.scale)))
            assert sum(ops.values()) == row["flops_norm"] + fold, (name, ops, dict(row))
            continue
        if "MaxPool" in ops:
            pool = int(layer.pool_size[0])
            assert ops.pop("MaxPool") * (pool - 1) == row["flops_max"] * pool, (name, ops)
        other = sum(v for k, v in ops.items()
                    if k not in MATMUL_OPS and k not in COMPARISON_OPS and k != "Softmax")
        assert other == row["flops_bias"] + row["flops_elementwise"], (name, ops, dict(row))
        if "Softmax" in ops:
            assert ops["Softmax"] * 3 == row["flops_softmax"] * 5, name
    unknown = set(prof) - set(table.index)
    assert not unknown, unknown


# -- a tiny pretrained-style vocabulary and config ---------------------------------------------
WORDS = (S.POS_ADJ + S.NEG_ADJ + S.NOUNS + S.ADVERBS + S.FILLER + list(S.POS_VERB) + list(S.NEG_VERB)
         + "a is i did not never always but the , . ? : ! how do human assistant".split()
         + " ".join(S.TOPICS).split() + " ".join(S.HELPFUL + S.UNHELPFUL).replace("{t}", "").split())


def pretrained_config(**kw):
    """Training settings of the tests that fine-tune a tiny random BERT preset (flat names)."""
    base = dict(seq_len=16, epochs=1, max_steps=8, batch_size=32, patience=0)
    return TrainConfig.from_flat(**{**base, **kw})



# -- a zoo of reward models written the way users write them -------------------------------------
#: every zoo model reads ``[batch, ZOO_SEQ]`` int32 token ids below ``ZOO_VOCAB``
ZOO_SEQ, ZOO_VOCAB = 16, 60


def _ids_input():
    from rmcompress._keras import keras as k
    return k.Input((ZOO_SEQ,), dtype="int32", name="token_ids")


def zoo_kim_cnn():
    """A Sequential Kim-style CNN (Embedding -> Conv1D -> max over time -> Dense -> Dense)."""
    from rmcompress._keras import keras as k
    return k.Sequential([_ids_input(), k.layers.Embedding(ZOO_VOCAB, 16), k.layers.Conv1D(12, 3, activation="relu"),
                         k.layers.GlobalMaxPooling1D(), k.layers.Dense(10, activation="relu"),
                         k.layers.Dropout(0.2), k.layers.Dense(1)], name="kim_cnn")


def zoo_parallel_conv():
    """Parallel Conv1D branches of widths 2, 3, 4 joined by Concatenate."""
    from rmcompress._keras import keras as k
    ids = _ids_input()
    x = k.layers.Embedding(ZOO_VOCAB, 16)(ids)
    pooled = [k.layers.GlobalMaxPooling1D()(k.layers.Conv1D(n, w, activation="relu")(x))
              for w, n in ((2, 6), (3, 8), (4, 5))]
    h = k.layers.Dense(8, activation="relu")(k.layers.Concatenate()(pooled))
    return k.Model(ids, k.layers.Dense(1)(h), name="parallel_conv")


def _transformer(pre_ln: bool):
    from rmcompress._keras import keras as k
    ids = _ids_input()
    x = k.layers.Embedding(ZOO_VOCAB, 16, mask_zero=True)(ids)
    for i in range(2):
        h = k.layers.LayerNormalization()(x) if pre_ln else x
        a = k.layers.MultiHeadAttention(4, 4, name=f"mha{i}")(h, h)
        x = x + a
        x = x if pre_ln else k.layers.LayerNormalization()(x)
        h = k.layers.LayerNormalization()(x) if pre_ln else x
        f = k.layers.Dense(24, activation="gelu")(h)
        f = k.layers.Dropout(0.1)(k.layers.Dense(16)(f))
        x = x + f
        x = x if pre_ln else k.layers.LayerNormalization()(x)
    pooled = k.layers.GlobalAveragePooling1D()(x)
    return k.Model(ids, k.layers.Dense(1)(pooled), name="preln" if pre_ln else "postln")


def zoo_transformer_postln():
    """A functional post-LN transformer: keras MultiHeadAttention, ``x + y`` residuals."""
    return _transformer(False)


def zoo_transformer_preln():
    """The same with pre-LN blocks."""
    return _transformer(True)


def zoo_batchnorm_cnn():
    """Two Conv1D -> BatchNormalization -> ReLU stages, average over time."""
    from rmcompress._keras import keras as k
    ids = _ids_input()
    x = k.layers.Embedding(ZOO_VOCAB, 12)(ids)
    for n in (10, 8):
        x = k.layers.ReLU()(k.layers.BatchNormalization()(k.layers.Conv1D(n, 3, padding="same")(x)))
    return k.Model(ids, k.layers.Dense(1)(k.layers.GlobalAveragePooling1D()(x)), name="bn_cnn")


def zoo_bilstm():
    """A bidirectional LSTM encoder with a Dense head (the LSTM is counted, not pruned)."""
    from rmcompress._keras import keras as k
    ids = _ids_input()
    x = k.layers.Embedding(ZOO_VOCAB, 12, mask_zero=True)(ids)
    x = k.layers.Bidirectional(k.layers.LSTM(8, return_sequences=True))(x)
    h = k.layers.Dense(10, activation="tanh")(k.layers.GlobalMaxPooling1D()(x))
    return k.Model(ids, k.layers.Dense(1)(h), name="bilstm")


def zoo_gru_head():
    """A GRU over a Dense projection of the embeddings (the projection is prunable)."""
    from rmcompress._keras import keras as k
    ids = _ids_input()
    x = k.layers.Dense(10, activation="relu")(k.layers.Embedding(ZOO_VOCAB, 12)(ids))
    return k.Model(ids, k.layers.Dense(1)(k.layers.GRU(6)(x)), name="gru")


def zoo_dan():
    """A deep averaging network: mean of the embeddings, two ReLU layers."""
    from rmcompress._keras import keras as k
    return k.Sequential([_ids_input(), k.layers.Embedding(ZOO_VOCAB, 16, mask_zero=True),
                         k.layers.GlobalAveragePooling1D(), k.layers.Dense(12, activation="relu"),
                         k.layers.Dense(8, activation="relu"), k.layers.Dense(1)], name="dan")


def zoo_residual_gated():
    """A residual stream without normalisation (embedding width coupled through ``x + y`` and Add)
    with a multiplicative gate ``x * sigmoid(y)``: one coupled group across every member."""
    from rmcompress._keras import keras as k
    ids = _ids_input()
    x = k.layers.GlobalAveragePooling1D()(k.layers.Embedding(ZOO_VOCAB, 12)(ids))
    h = k.layers.Dense(16, activation="relu")(x)
    x = x + k.layers.Dense(12)(h)
    g = k.layers.Dense(12, activation="sigmoid")(x)
    x = k.layers.Add()([x, k.layers.Multiply()([x, g])])
    return k.Model(ids, k.layers.Dense(1)(tf.nn.relu(x)), name="residual")


def zoo_pairwise_scalar():
    """A scorer whose reward is ``[batch]`` (squeezed), as pairwise trainers often write it."""
    from rmcompress._keras import keras as k
    ids = _ids_input()
    x = k.layers.GlobalMaxPooling1D()(k.layers.Conv1D(10, 3, activation="relu")(
        k.layers.Embedding(ZOO_VOCAB, 12)(ids)))
    r = k.layers.Dense(1)(k.layers.Dense(6, activation="relu")(x))
    return k.Model(ids, tf.squeeze(r, axis=-1), name="pairwise")


def zoo_keras3_cnn():
    """A Keras 3 Sequential CNN (enters through ``from_keras``)."""
    from rmcompress._keras import keras3
    k3 = keras3()
    return k3.Sequential([k3.Input((ZOO_SEQ,), dtype="int32"), k3.layers.Embedding(ZOO_VOCAB, 12),
                          k3.layers.Conv1D(8, 3, activation="relu"), k3.layers.GlobalMaxPooling1D(),
                          k3.layers.Dense(6, activation="relu"), k3.layers.Dense(1)], name="k3_cnn")


def zoo_keras3_transformer():
    """A Keras 3 functional post-LN transformer block with ``x + y`` residuals."""
    from rmcompress._keras import keras3
    k3 = keras3()
    ids = k3.Input((ZOO_SEQ,), dtype="int32")
    x = k3.layers.Embedding(ZOO_VOCAB, 16, mask_zero=True)(ids)
    x = k3.layers.LayerNormalization()(x + k3.layers.MultiHeadAttention(2, 8)(x, x))
    f = k3.layers.Dense(16)(k3.layers.Dense(24, activation="relu")(x))
    x = k3.layers.LayerNormalization()(x + f)
    return k3.Model(ids, k3.layers.Dense(1)(k3.layers.GlobalAveragePooling1D()(x)), name="k3_transformer")


#: name -> builder; Keras 3 builders are marked ``keras3`` (convert with ``rmcompress.from_keras``)
ZOO = {f.__name__[4:]: f for f in (zoo_kim_cnn, zoo_parallel_conv, zoo_transformer_postln, zoo_transformer_preln,
                                   zoo_batchnorm_cnn, zoo_bilstm, zoo_gru_head, zoo_dan, zoo_residual_gated,
                                   zoo_pairwise_scalar, zoo_keras3_cnn, zoo_keras3_transformer)}


def zoo_model(name: str, seed: int = 0):
    """The zoo model ``name`` as a tf_keras model (Keras 3 ones converted) with random weights."""
    from rmcompress.models.convert import from_keras
    model = ZOO[name]()
    if name.startswith("keras3"):
        model = from_keras(model)
    return randomize(model, seed)


def zoo_ids(n=32, seed=1):
    return token_ids(n, ZOO_SEQ, ZOO_VOCAB, seed)


# -- the CLI in a fresh interpreter, reporting whether TensorFlow was imported ----------------------
CLI_PROBE = r"""
import json, sys
from rmcompress.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:  # argparse refuses a flag itself
    rc = e.code
print(json.dumps({"rc": rc, "tensorflow": "tensorflow" in sys.modules}))
"""


def run_cli_probe(*args, cwd):
    """``(exit status, whether tensorflow was imported, stderr)`` of the CLI in a fresh interpreter."""
    import json

    p = subprocess.run([sys.executable, "-c", CLI_PROBE, *map(str, args)], cwd=str(cwd), capture_output=True,
                       text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    result = json.loads(p.stdout.strip().splitlines()[-1])
    return result["rc"], result["tensorflow"], p.stderr.strip()
