"""Distillation: the student matches a teacher's rewards as well as the labels.

The teacher (a model directory) scores the raw training texts ONCE before training, with the
teacher's own tokenizer, so any student works: a from-scratch architecture with its own
vocabulary, a bridged pretrained backbone, or a (budget-trained) copy of the teacher. Extra
unlabeled texts (``--unlabeled``) are scored by the teacher too and join the training rows with
``labeled = 0``: they contribute only the distillation term.

Per example (``a`` = ``distill_weight``, ``l`` = the task loss, ``labeled`` in {0, 1})::

    loss_i = (1 - a) * labeled_i * l_i + a * d_i

pointwise: ``s`` = student reward, ``t`` = teacher reward; pairwise: ``s = r_c - r_r`` and
``t = t_c - t_r`` (the margins), with temperature ``T``::

    mse:  d = (s - t)^2
    ce:   d = T^2 * KL(sigma(t/T) || sigma(s/T))
            = T^2 * [softplus(s/T) - p s/T - softplus(t/T) + p t/T],   p = sigma(t/T)

(``ce`` is the temperature-scaled cross-entropy minus the teacher's entropy, so it is 0 when the
student matches; pointwise it needs logits, i.e. the ``bce`` loss.)

Representation distillation (``features`` = ``b`` > 0, pointwise): the student's pooled features
``u`` (the output of the layer :data:`FEATURE_LAYER`, the input of the reward head) also match the
teacher's ``v``, per feature in units of the teacher's spread over the distillation rows::

    loss_i += b * f_i,   f_i = mean_j ((u_ij - v_ij) / sigma_j)^2

(``sigma_j``: the standard deviation of the teacher's feature ``j``, floored at 1e-3 of the
largest, so the few huge outlier dimensions of a BERT encoder do not drown the rest; ``f`` is 1 for
a student that only knows the mean). The reward term pins one direction of the pooled vector; this
term passes the teacher's whole representation, which is what a pruned copy of the teacher (same
width, same pooling) has to recover. Student and teacher must have the same feature width.

Block-wise hidden-state distillation (``blocks`` = ``c`` > 0, pointwise; CoFi's layer distillation):
the residual stream after every block the student kept matches the teacher's after the same block.
The layers compared are named (:data:`BLOCK_LAYERS`: ``block{i}_ffn_norm`` in the ``bert`` graph,
``block{i}_ffn_residual`` in ``transformer``; or any names / ``{i}`` patterns, ``block_layers``); a
pruned copy of the teacher keeps the names of its kept blocks, so a teacher layer the student lacks
(a removed block) is skipped, and each student block maps to the teacher block of the same index.
For layer ``l`` with student output ``h`` ``[T, d_s]`` and teacher output ``g`` ``[T, d_t]`` over the
``m_i`` non-padding tokens of example ``i``::

    loss_i += c * mean_l h_il,   h_il = mean_{t, j} ((h_t W_l + b_l - g_t)_j / sigma_lj)^2

``W_l`` ``[d_s, d_t]``, ``b_l``: a learned projection (a Dense, trained with the student;
identity-initialised when ``d_s = d_t``, Glorot otherwise); ``sigma_lj``: the spread of the
teacher's channel ``j`` of layer ``l`` over the non-padding tokens of up to
:data:`BLOCK_SCALE_ROWS` distillation rows, floored like ``sigma_j`` above. The teacher's hidden
states are computed on the fly, one forward pass of the frozen teacher per batch (student and
teacher read the same token ids): stored, they would take ``rows x blocks x T x d_t x 4`` bytes
(MiniLM-L6 at 64 tokens: 590 kB a row, 59 GB per 100k distillation rows; ``pretrained-aggressive``
on SST-2 distills on 57k texts and their word-replacement variants), against 1.5 kB a row for the
pooled features.

The sum is reduced like the task
loss (``tf.nn.compute_average_loss``), so it is correct under ``tf.distribute``. Metrics added:
``label_loss`` (mean task loss over labeled rows), ``distill_loss`` (mean ``d``), ``feature_loss``
(mean ``f``) and ``block_loss`` (mean ``h``). Quality
metrics on an unlabeled row compare with the teacher's decision.

:class:`DistillationTerm` is a per-example loss term (:class:`rmcompress.training.model.LossTerm`),
so it composes on any ``RewardTrainingModel`` with any other term (e.g. complexity-aware
training's): ``model.add_term(DistillationTerm(settings))``; ``with_distillation(builder)`` wraps a
training-model builder of ``train()``.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.config.choices import DISTILL_LOSSES
from rmcompress.data.augment import augment_texts, neighbour_table, token_vectors
from rmcompress.data.loaders import PointwiseData, load_pairwise, load_texts
from rmcompress.data.pipeline import EncodedData, encode
from rmcompress.errors import UsageError
from rmcompress.models.modeldir import load_model_dir
from rmcompress.training.lengths import predict_by_length, slack_or_none
from rmcompress.training.model import LossTerm, RewardTrainingModel


#: the layer representation distillation matches: every shipped architecture's pooled features
FEATURE_LAYER = "pool"
#: the residual stream after block ``{i}`` (block-wise distillation), by graph: ``bert`` (told by
#: its ``embedding_norm`` layer) normalises after the residual add, ``transformer`` (pre-LN) before
BLOCK_LAYERS = {"bert": "block{i}_ffn_norm", "transformer": "block{i}_ffn_residual"}
#: rows of the distillation data whose tokens give the teacher's per-channel spread ``sigma_lj``
BLOCK_SCALE_ROWS = 1024


@dataclass
class DistillSettings:
    weight: float = 0.5
    loss: str = "mse"
    temperature: float = 1.0
    #: ``b``: weight of the pooled-feature term (0: rewards only)
    features: float = 0.0
    #: ``1 / sigma_j`` per feature (:func:`feature_scale`); None: 1
    feature_scale: np.ndarray | None = field(default=None, repr=False)
    #: ``k``: word-replacement variants per training/unlabeled text of >= 10 words, scored by the
    #: teacher (:mod:`rmcompress.data.augment`; pointwise); 0: none
    augment: int = 0
    #: ``c``: weight of the block-wise hidden-state term (0: none)
    blocks: float = 0.0
    #: the layers it compares: names or ``{i}`` patterns (None: :data:`BLOCK_LAYERS` for the graph)
    block_layers: tuple | None = None
    #: the teacher whose hidden states are computed on the fly (a keras model reading the same ids)
    block_teacher: object | None = field(default=None, repr=False)
    #: ``{layer: 1 / sigma_lj}`` (:func:`block_scales`); None: 1
    block_scale: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        if not float(self.features) >= 0.0:
            raise UsageError(f"--distill-features {self.features} must be >= 0")
        if not float(self.blocks) >= 0.0:
            raise UsageError(f"distill_blocks {self.blocks} must be >= 0")
        if not 0.0 <= float(self.weight) <= 1.0:
            raise UsageError(f"--distill-weight {self.weight} must be in [0, 1]")
        if self.loss not in DISTILL_LOSSES:
            raise UsageError(f"--distill-loss {self.loss!r} unknown; allowed: {', '.join(DISTILL_LOSSES)}")
        if float(self.temperature) <= 0:
            raise UsageError(f"--distill-temperature {self.temperature} must be > 0")
        if int(self.augment) < 0:
            raise UsageError(f"--augment {self.augment} must be >= 0")


def distill_per_example(student, teacher, loss: str = "mse", temperature: float = 1.0):
    """``[B]`` distillation terms ``d`` (module docstring) for student/teacher values ``[B]``."""
    s = tf.reshape(tf.cast(student, tf.float32), [-1])
    t = tf.reshape(tf.cast(teacher, tf.float32), [-1])
    if loss == "mse":
        return tf.square(s - t)
    if loss == "ce":
        zs, zt = s / temperature, t / temperature
        p = tf.sigmoid(zt)
        return temperature ** 2 * (tf.nn.softplus(zs) - p * zs - tf.nn.softplus(zt) + p * zt)
    raise ValueError(f"distillation loss {loss!r} unknown; allowed: {', '.join(DISTILL_LOSSES)}")


def feature_model(scorer, layer: str = FEATURE_LAYER):
    """``ids -> (reward, features of layer)``: a functional model sharing ``scorer``'s layers."""
    try:
        features = scorer.get_layer(layer).output
    except ValueError:
        raise UsageError(f"representation distillation matches the output of the layer {layer!r}; "
                         f"model {scorer.name!r} has no such layer") from None
    if isinstance(features, (list, tuple)):
        raise UsageError(f"layer {layer!r} of model {scorer.name!r} has several outputs; cannot match them")
    return keras.Model(scorer.inputs, [scorer.outputs[0], features], name=f"{scorer.name}_features")


def teacher_outputs(model, ids, batch_size: int = 512, features: bool = False):
    """The teacher's rewards ``[n]`` on ``ids`` and, with ``features``, its pooled features
    ``[n, D]`` (else None). Scored by length (:func:`rmcompress.training.lengths.predict_by_length`:
    each batch cut to its rows' tokens) when the teacher scores cut rows as padded ones
    (:func:`~rmcompress.training.lengths.slack_or_none`), else padded."""
    ids = np.asarray(ids)
    scorer = feature_model(model) if features else model
    slack = slack_or_none(model, ids) if len(ids) > batch_size else None  # one batch: nothing to sort
    if slack is None:
        outs = scorer.predict(ids, batch_size=batch_size, verbose=0)
        outs = list(outs) if features else [outs]
    else:
        outs = predict_by_length(scorer, ids, slack, batch_size)
    reward = np.asarray(outs[0]).reshape(-1).astype(np.float32)
    if not features:
        return reward, None
    return reward, np.asarray(outs[1]).reshape(len(ids), -1).astype(np.float32)


def feature_scale(features: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """``1 / sigma_j`` of ``features [n, D]`` (module docstring), ``sigma_j`` floored at
    ``floor * max(sigma)``."""
    sigma = np.asarray(features, np.float64).std(axis=0)
    sigma = np.maximum(sigma, floor * max(float(sigma.max()), 1e-12))
    return (1.0 / sigma).astype(np.float32)


def feature_distance(student, teacher, scale=None):
    """``[B]`` ``f = mean_j ((u_j - v_j) * scale_j)^2`` for features ``[B, D]``."""
    u = tf.reshape(tf.cast(student, tf.float32), [tf.shape(student)[0], -1])
    v = tf.cast(teacher, tf.float32)
    diff = u - v
    if scale is not None:
        diff = diff * scale
    return tf.reduce_mean(tf.square(diff), axis=-1)


def block_layer_names(teacher, layers=None) -> list[str]:
    """The teacher's layers the block term compares, in order: ``layers`` (names, or patterns with
    ``{i}`` for the block index), default :data:`BLOCK_LAYERS` for the teacher's graph. A name or
    pattern the teacher lacks is a one-line :class:`UsageError` naming it."""
    if not layers:
        layers = [BLOCK_LAYERS["bert" if _has_layer(teacher, "embedding_norm") else "transformer"]]
    elif isinstance(layers, str):
        layers = [layers]
    names = [layer.name for layer in teacher.layers]
    out = []
    for spec in layers:
        spec = str(spec)
        if "{i}" in spec:
            rx = re.compile("^" + re.escape(spec).replace(re.escape("{i}"), r"(\d+)") + "$")
            found = sorted(((int(m.group(1)), n) for n in names if (m := rx.match(n))))
            if not found:
                raise UsageError(f"block distillation: no layer of model {teacher.name!r} matches {spec!r}")
            out += [n for _, n in found]
        elif spec in names:
            out.append(spec)
        else:
            raise UsageError(f"block distillation: model {teacher.name!r} has no layer {spec!r}")
    return list(dict.fromkeys(out))


def _has_layer(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def _single_output(model, name: str):
    out = model.get_layer(name).output
    if isinstance(out, (list, tuple)):
        raise UsageError(f"block distillation: layer {name!r} of model {model.name!r} has several outputs")
    return out


def block_pairs(student, teacher, layers=None) -> list[str]:
    """The layer names of :func:`block_layer_names` the student has too (a removed block's are gone);
    a UsageError when none is left."""
    names = [n for n in block_layer_names(teacher, layers) if _has_layer(student, n)]
    if not names:
        raise UsageError(f"block distillation: model {student.name!r} has none of the teacher's layers "
                         f"{', '.join(block_layer_names(teacher, layers))}")
    return names


def hidden_model(model, names, head: bool = True):
    """``ids -> [reward (if head), output of each of names]``: a functional model sharing ``model``'s layers."""
    outs = [_single_output(model, n) for n in names]
    return keras.Model(model.inputs, ([model.outputs[0]] if head else []) + outs, name=f"{model.name}_blocks")


def token_mask(ids):
    """``[B, T]`` 1.0 where ``ids`` is a token, 0.0 on padding (id 0)."""
    return tf.cast(tf.not_equal(ids, 0), tf.float32)


def block_scales(teacher, ids, layers=None, rows: int = BLOCK_SCALE_ROWS, batch_size: int = 64) -> dict:
    """``{layer: 1 / sigma_lj}`` over the non-padding tokens of the first ``rows`` of ``ids``
    (module docstring)."""
    names = block_layer_names(teacher, layers)
    ids = np.asarray(ids)[:rows]
    outs = hidden_model(teacher, names, head=False).predict(ids, batch_size=batch_size, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    keep = (ids != 0).reshape(-1) if outs and outs[0].ndim == 3 else None
    scales = {}
    for n, h in zip(names, outs):
        flat = h.reshape(-1, h.shape[-1]) if h.ndim == 3 else h
        scales[n] = feature_scale(flat[keep] if h.ndim == 3 else flat)
    return scales


def block_distance(student, teacher, kernel, bias, scale, mask):
    """``[B]`` ``h = mean_{t, j} ((s_t W + b - g_t)_j * scale_j)^2`` over the tokens where ``mask``
    ``[B, T]`` is 1 (rank-2 outputs: one vector per example)."""
    s = tf.cast(student, tf.float32)
    g = tf.stop_gradient(tf.cast(teacher, tf.float32))
    diff = tf.tensordot(s, kernel, axes=[[s.shape.rank - 1], [0]]) + bias - g
    if scale is not None:
        diff = diff * scale
    per_token = tf.reduce_mean(tf.square(diff), axis=-1)
    if per_token.shape.rank == 1:
        return per_token
    return tf.reduce_sum(per_token * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


def identity_or_glorot(shape, dtype=None):
    """A projection kernel ``[d_s, d_t]``: the identity when ``d_s = d_t``, else Glorot uniform."""
    if shape[0] == shape[1]:
        return tf.eye(shape[0], dtype=dtype or tf.float32)
    return keras.initializers.GlorotUniform(seed=0)(shape, dtype)


class DistillationTerm(LossTerm):
    """The distillation term of a ``RewardTrainingModel`` (see module docstring): a per-example
    term, so it composes with any other term (e.g. complexity-aware training's).

    Batches without a ``teacher`` input (e.g. validation data without teacher scores) keep the
    plain task loss."""

    def __init__(self, settings: DistillSettings):
        self.settings = settings
        self.metrics = []
        self._feature_model, self._feature_scale = None, None
        self._student_model = self._teacher_blocks = None
        self.block_names, self.projections, self._block_scale = [], [], []

    def attach(self, model) -> None:
        settings = self.settings
        self.metrics = [keras.metrics.Mean(name="label_loss"), keras.metrics.Mean(name="distill_loss")]
        if settings.features:
            if model.task != "pointwise":
                raise UsageError("representation distillation (--distill-features) is pointwise only; "
                                 "pairwise students distill the teacher's margins")
            self._feature_model = feature_model(model.scorer)
            width = self._feature_model.outputs[1].shape[-1]
            if settings.feature_scale is not None and width != len(settings.feature_scale):
                raise UsageError(f"--distill-features: the student's {FEATURE_LAYER!r} features are {width} wide, "
                                 f"the teacher's {len(settings.feature_scale)}; they must match (e.g. a pruned "
                                 "copy of the teacher, --init TEACHER)")
            if settings.feature_scale is not None:
                self._feature_scale = tf.constant(np.asarray(settings.feature_scale, np.float32))
            self.metrics.append(keras.metrics.Mean(name="feature_loss"))
        if settings.blocks:
            self._attach_blocks(model)

    def _attach_blocks(self, model) -> None:
        s = self.settings
        if model.task != "pointwise":
            raise UsageError("block distillation is pointwise only; pairwise students distill the teacher's margins")
        if s.block_teacher is None:
            raise UsageError("block distillation needs the teacher model (DistillSettings.block_teacher)")
        teacher, scorer = s.block_teacher, model.scorer
        self.block_names = block_pairs(scorer, teacher, s.block_layers)
        self._teacher_blocks = hidden_model(teacher, self.block_names, head=False)
        heads = [FEATURE_LAYER] if s.features else []
        student_outs = [_single_output(scorer, n) for n in heads + self.block_names]
        self._student_model = keras.Model(scorer.inputs, [scorer.outputs[0]] + student_outs,
                                          name=f"{scorer.name}_blocks")
        self.projections, self._block_scale = [], []
        for i, name in enumerate(self.block_names):
            d_s = scorer.get_layer(name).output.shape[-1]
            d_t = teacher.get_layer(name).output.shape[-1]
            kernel = model.add_weight(name=f"block_projection{i}_kernel", shape=(d_s, d_t),
                                      initializer=identity_or_glorot, trainable=True)
            bias = model.add_weight(name=f"block_projection{i}_bias", shape=(d_t,), initializer="zeros",
                                    trainable=True)
            self.projections.append((kernel, bias))
            scale = (s.block_scale or {}).get(name)
            if scale is not None and len(scale) != d_t:
                raise UsageError(f"block distillation: layer {name!r} is {d_t} wide in the teacher, its scale "
                                 f"{len(scale)}")
            self._block_scale.append(None if scale is None else tf.constant(np.asarray(scale, np.float32)))
        self.metrics.append(keras.metrics.Mean(name="block_loss"))

    @staticmethod
    def _applies(x) -> bool:
        return isinstance(x, dict) and "teacher" in x

    def forward(self, model, x, training: bool):
        """Pointwise with the feature or block term: the reward, ``{"features": pooled features,
        "blocks": [block outputs]}`` in one call."""
        if not self._applies(x):
            return None
        if self._student_model is not None:
            outs = self._student_model(x["ids"], training=training)
            extra = {"blocks": list(outs[1 + bool(self.settings.features):])}
            if self.settings.features and "teacher_features" in x:
                extra["features"] = outs[1]
            return outs[0], extra
        if self._feature_model is None or "teacher_features" not in x:
            return None
        reward, features = self._feature_model(x["ids"], training=training)
        return reward, {"features": features}

    def block_loss(self, ids, student_blocks):
        """``[B]`` ``mean_l h_il`` (module docstring), the teacher's block outputs computed here."""
        teacher = self._teacher_blocks(ids, training=False)
        teacher = teacher if isinstance(teacher, (list, tuple)) else [teacher]
        mask = token_mask(ids)
        parts = [block_distance(u, v, k, b, sc, mask)
                 for u, v, (k, b), sc in zip(student_blocks, teacher, self.projections, self._block_scale)]
        return tf.add_n(parts) / float(len(parts))

    def per_example(self, model, x, y, value, extra, task_loss):
        if not self._applies(x):
            return None
        teacher = tf.reshape(tf.cast(x["teacher"], tf.float32), [-1])
        labeled = tf.reshape(tf.cast(x["labeled"], tf.float32), [-1])
        s = self.settings
        d = distill_per_example(value, teacher, s.loss, s.temperature)
        per_example = (1.0 - s.weight) * labeled * task_loss + s.weight * d
        self.metrics[0].update_state(task_loss, sample_weight=labeled)
        self.metrics[1].update_state(d)
        if extra is not None and "features" in extra:
            f = feature_distance(extra["features"], x["teacher_features"], self._feature_scale)
            per_example = per_example + s.features * f
            self.metrics[2].update_state(f)
        if extra is not None and "blocks" in extra:
            h = self.block_loss(x["ids"], extra["blocks"])
            per_example = per_example + s.blocks * h
            self.metrics[-1].update_state(h)
        return per_example, model.task_object.teacher_labels(y, teacher, labeled > 0.5)


class DistillationModel(RewardTrainingModel):
    """A ``RewardTrainingModel`` to which :meth:`init_distillation` adds a :class:`DistillationTerm`."""

    def init_distillation(self, settings: DistillSettings) -> None:
        self.add_term(DistillationTerm(settings))


def with_distillation(builder, settings: DistillSettings):
    """Wrap ``builder(scorer, cfg, loss) -> RewardTrainingModel`` so its model also distills: a
    :class:`DistillationTerm` is added to the built model."""

    def build(scorer, cfg, loss):
        model = builder(scorer, cfg, loss)
        model.add_term(DistillationTerm(settings))
        return model

    return build


# -- teacher scores ---------------------------------------------------------------------------------
_SCORES: dict = {}  # (teacher key, texts digest) -> rewards; runs in one process (seeds) score once
_SCORE_CACHE_MAX = 16


def _texts_digest(texts) -> str:
    import hashlib

    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def _teacher_key(bundle):
    p = getattr(bundle, "path", None)
    if p is None:
        return None
    try:
        return (str(Path(p).resolve()), (Path(p) / "model.keras").stat().st_mtime_ns)
    except OSError:
        return None


_TEACHERS: dict = {}


def _load_teacher(path, task: str):
    """``load_model_dir`` with the last teacher kept in memory (keyed by directory and mtime)."""

    try:
        key = (str(Path(path).resolve()), (Path(path) / "model.keras").stat().st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _TEACHERS:
        bundle = _TEACHERS[key]
        if bundle.task != task:
            return load_model_dir(path, expect_task=task)  # raises the usual error
        return bundle
    bundle = load_model_dir(path, expect_task=task)
    _TEACHERS.clear()
    if key is not None:
        _TEACHERS[key] = bundle
    return bundle


def teacher_features(bundle, texts, batch_size: int = 128) -> np.ndarray:
    """The teacher's pooled features ``[n, D]`` (layer :data:`FEATURE_LAYER`) for raw ``texts``,
    tokenised with the teacher's tokenizer."""
    ids = bundle.tokenizer.encode(list(texts))
    if len(ids) == 0:
        return np.zeros((0, 0), np.float32)
    return teacher_outputs(bundle.model, ids, batch_size, features=True)[1]


def teacher_rewards(bundle, texts, batch_size: int = 128) -> np.ndarray:
    """The teacher's rewards ``[n]`` for raw ``texts``, tokenised with the teacher's tokenizer.
    Cached in-process per (teacher directory and its mtime, texts)."""
    texts = list(texts)
    tkey = _teacher_key(bundle)
    key = (tkey, _texts_digest(texts)) if tkey is not None else None
    if key is not None and key in _SCORES:
        return _SCORES[key].copy()
    ids = bundle.tokenizer.encode(texts)
    if len(ids) == 0:
        return np.zeros((0,), np.float32)
    out = teacher_outputs(bundle.model, ids, batch_size)[0]
    if key is not None:
        if len(_SCORES) >= _SCORE_CACHE_MAX:
            _SCORES.pop(next(iter(_SCORES)))
        _SCORES[key] = out.copy()
    return out


def teacher_targets(bundle, data, batch_size: int = 128) -> np.ndarray:
    """Pointwise: the teacher's reward per text; pairwise: its margin ``t_c - t_r`` per pair."""
    if data.task == "pairwise":
        return teacher_rewards(bundle, data.chosen, batch_size) - teacher_rewards(bundle, data.rejected, batch_size)
    return teacher_rewards(bundle, data.texts, batch_size)


def load_unlabeled(path, task: str, columns: dict | None = None):
    """Unlabeled data: pointwise a text column (labels ignored, set to 0); pairwise chosen/rejected
    columns whose order carries no preference (only the teacher's margin is used). ``columns``:
    ``{setting: column}`` of the column settings (``text_column``, ``prompt_column``,
    ``chosen_column``, ``rejected_column``) the training data was read with; missing ones default."""
    columns = columns or {}
    if task == "pairwise":
        return load_pairwise(path, **{k: columns.get(k) for k in ("prompt_column", "chosen_column",
                                                                   "rejected_column")})
    texts = load_texts(path, columns.get("text_column"))
    return PointwiseData(texts, np.zeros(len(texts), np.float32), "binary", str(path))


def augmented_texts(model, tokenizer, texts: list[str], copies: int, p: float = 0.3, min_words: int = 10,
                    seed: int = 0) -> list[str]:
    """``copies`` word-replacement variants of every text of >= ``min_words`` words, neighbours from
    the input embedding of the teacher ``model`` (:mod:`rmcompress.data.augment`)."""

    vocab = tokenizer.vocabulary
    table = neighbour_table(token_vectors(model, len(vocab)), vocab)
    return augment_texts(texts, table, copies=copies, p=p, min_words=min_words, seed=seed)


def concat_encoded(a: EncodedData, b: EncodedData) -> EncodedData:
    """Rows of ``a`` then rows of ``b`` (every field; ``None`` fields stay ``None``)."""
    def cat(x, y):
        return None if x is None else np.concatenate([x, y], axis=0)

    if (a.teacher_features is None) != (b.teacher_features is None):
        raise ValueError("concat_encoded: teacher features on one side only")
    return EncodedData(a.task, cat(a.ids, b.ids), cat(a.labels, b.labels), cat(a.chosen, b.chosen),
                       cat(a.rejected, b.rejected), cat(a.margin, b.margin), cat(a.teacher, b.teacher),
                       cat(a.labeled, b.labeled), cat(a.teacher_features, b.teacher_features))


@dataclass
class DistillationPlan:
    """Teacher targets computed once for one training run (see :meth:`prepare`)."""

    settings: DistillSettings
    teacher_path: str
    train_targets: np.ndarray
    val_targets: np.ndarray | None = None
    unlabeled: object | None = None           # PointwiseData / PairwiseData
    unlabeled_targets: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    #: ``--distill-features``: the teacher's pooled features per train / val / unlabeled row
    features: dict = field(default_factory=dict)
    #: ``--distill-blocks``: the teacher's tokenizer, which the student's must equal
    block_tokenizer: object | None = None

    @classmethod
    def prepare(cls, teacher: str, task: str, loss: str, train_data, val_data=None,
                settings: DistillSettings | None = None, unlabeled: str | None = None,
                columns: dict | None = None, batch_size: int = 128,
                split_settings: tuple | None = None) -> "DistillationPlan":
        """Load the teacher directory, check it fits the task, score train/val/unlabeled texts.

        ``columns``: the column settings the training data was read with (:func:`load_unlabeled`).
        ``split_settings`` = the student's ``(val_fraction, seed, split_mode)`` (None: its split
        was given explicitly), compared with the teacher's to flag possible validation leakage."""
        settings = settings or DistillSettings()
        bundle = _load_teacher(teacher, task)
        t_loss = bundle.metadata.get("loss")
        if task == "pointwise":
            if settings.loss == "ce" and loss != "bce":
                raise UsageError(f"--distill-loss ce needs logits (the bce loss); this task uses {loss}")
            if t_loss is not None and t_loss != loss:
                raise UsageError(f"{teacher}: teacher trained with {t_loss} but the student uses {loss}; "
                                 "their rewards are on different scales")
        extra = load_unlabeled(unlabeled, task, columns) if unlabeled else None
        n_augmented = 0
        if settings.augment:
            if task != "pointwise":
                raise UsageError("--augment is pointwise only: a pair's preference does not survive "
                                 "independent word swaps")

            variants = augmented_texts(bundle.model, bundle.tokenizer,
                                       list(train_data.texts) + (list(extra.texts) if extra else []),
                                       settings.augment)
            n_augmented = len(variants)
            more = PointwiseData(variants, np.zeros(n_augmented, np.float32), "binary", "augmented")
            extra = more if extra is None else PointwiseData(extra.texts + variants, np.concatenate(
                [extra.labels, more.labels]), "binary", extra.source)
        info = {"teacher": str(teacher), "distill_weight": settings.weight, "distill_objective": settings.loss,
                "distill_temperature": settings.temperature,
                "n_unlabeled": len(extra) if extra is not None else 0, "n_augmented": n_augmented,
                "teacher_same_split": _same_split(bundle.metadata, getattr(train_data, "source", None),
                                                  split_settings)}
        if info["teacher_same_split"] is False:
            warnings.warn(f"{teacher}: the teacher was trained on the same data file with a different "
                          "split; its rewards may leak validation labels into the student", stacklevel=2)
        has_val = val_data is not None and len(val_data) > 0
        plan = cls(settings, str(teacher), teacher_targets(bundle, train_data, batch_size),
                   teacher_targets(bundle, val_data, batch_size) if has_val else None,
                   extra, teacher_targets(bundle, extra, batch_size) if extra is not None else None, info)
        if settings.features:
            if task != "pointwise":
                raise UsageError("--distill-features is pointwise only; pairwise students distill the margins")
            plan.features = {"train": teacher_features(bundle, train_data.texts, batch_size)}
            if has_val:
                plan.features["val"] = teacher_features(bundle, val_data.texts, batch_size)
            if extra is not None:
                plan.features["unlabeled"] = teacher_features(bundle, extra.texts, batch_size)
            fit_rows = np.concatenate([plan.features["train"], plan.features.get("unlabeled", plan.features["train"][:0])])
            from dataclasses import replace

            plan.settings = replace(settings, feature_scale=feature_scale(fit_rows))
            info["distill_features"] = settings.features
        if settings.blocks:
            plan._block_teacher(bundle, train_data, extra)
            info["distill_blocks"] = settings.blocks
        del bundle
        return plan

    def _block_teacher(self, bundle, train_data, extra) -> None:
        """The block term's teacher (kept in memory: it runs on every batch), its per-channel
        scales over the first training (and unlabeled) texts, and its vocabulary, which the
        student's must equal (:meth:`check_student`)."""
        from dataclasses import replace

        texts = (list(train_data.texts) + (list(extra.texts) if extra is not None else []))[:BLOCK_SCALE_ROWS]
        ids = bundle.tokenizer.encode(texts)
        self.settings = replace(self.settings, block_teacher=bundle.model,
                                block_scale=block_scales(bundle.model, ids, self.settings.block_layers))
        self.block_tokenizer = bundle.tokenizer

    def check_student(self, tokenizer) -> None:
        """With the block term: the student reads the teacher's token ids (same vocabulary and
        tokenizer settings: length, truncation, case); a one-line UsageError naming the first
        difference otherwise."""
        if not self.settings.blocks:
            return
        theirs, ours = self.block_tokenizer, tokenizer
        why = None
        if list(ours.vocabulary) != list(theirs.vocabulary):
            diff = next((i for i, (a, b) in enumerate(zip(ours.vocabulary, theirs.vocabulary)) if a != b),
                        min(len(ours.vocabulary), len(theirs.vocabulary)))
            why = (f"its vocabulary ({len(ours.vocabulary)} tokens) is not the teacher's "
                   f"({len(theirs.vocabulary)}; they differ from token {diff})")
        elif ours.config != theirs.config:
            why = f"its tokenizer settings {ours.config} are not the teacher's {theirs.config}"
        if why:
            raise UsageError(f"--distill-blocks {self.teacher_path}: the student reads other token ids: {why}; "
                             "the block term feeds both the same ids: start the student from the teacher "
                             "(--init TEACHER) or its --backbone with the same settings")

    @property
    def extra_texts(self) -> list[str]:
        """Unlabeled texts (a from-scratch student's vocabulary also learns from them)."""
        return [] if self.unlabeled is None else list(self.unlabeled.all_texts)

    def attach(self, enc: EncodedData, tokenizer=None, split: str = "train") -> EncodedData:
        """``enc`` with teacher targets; on ``train`` the unlabeled rows (encoded with the student's
        ``tokenizer``) are appended with ``labeled = 0``."""
        targets = self.train_targets if split == "train" else self.val_targets
        if targets is None:
            return enc
        if len(targets) != len(enc):
            raise ValueError(f"{len(targets)} teacher targets for {len(enc)} {split} rows")
        out = EncodedData(enc.task, enc.ids, enc.labels, enc.chosen, enc.rejected, enc.margin,
                          targets.astype(np.float32), np.ones(len(enc), np.float32), self.features.get(split))
        if split == "train" and self.unlabeled is not None:
            extra = encode(self.unlabeled, tokenizer)
            extra.teacher = self.unlabeled_targets.astype(np.float32)
            extra.labeled = np.zeros(len(extra), np.float32)
            extra.teacher_features = self.features.get("unlabeled")
            if extra.margin is not None:
                extra.margin = np.zeros(len(extra), np.float32)
            out = concat_encoded(out, extra)
        return out

    def wrap(self, builder):
        return with_distillation(builder, self.settings)


def _same_split(meta: dict, source, split_settings) -> bool | None:
    """``False`` when the teacher trained on the same file with other split settings (possible
    leakage), ``True`` when the settings match, ``None`` when unknown or another file."""
    tdata = meta.get("data")
    tc = meta.get("train_config") or {}
    if not source or not tdata or split_settings is None or meta.get("validation"):
        return None
    try:  # in-memory data (a DataFrame, a Dataset) has a name, not a file to compare
        if not Path(source).is_file() or Path(source).resolve() != Path(tdata).resolve():
            return None
    except OSError:
        return None
    return tuple(split_settings) == (tc.get("val_fraction"), tc.get("seed"), tc.get("split_mode"))
