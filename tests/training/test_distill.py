"""Block-wise hidden-state distillation (:mod:`rmcompress.training.distill`): the term is 0 for a
student equal to its teacher and grows from the block a change is made in; gradients reach the
projections; blocks the student removed are skipped; bad layer names are one-line errors. The teacher
scores its rows by length where that gives the padded rewards."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import tf
from rmcompress.errors import UsageError
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.training.distill import (DistillSettings, DistillationTerm, block_layer_names, block_pairs,
                                         block_scales)
from rmcompress.training.model import RewardTrainingModel
from tests.helpers import randomize, token_ids

CFG = dict(arch="transformer", vocab_size=60, seq_len=16, width=16, depth=3, heads=2, head_dim=8, ffn=32,
           dropout=0.0)


def model(seed=0, **kw):
    return randomize(build_reward_model(ArchConfig(**{**CFG, **kw})), seed)


def wrapped(student, teacher, **kw):
    ids = token_ids(32, 16, 60)
    settings = DistillSettings(weight=0.0, blocks=1.0, block_teacher=teacher,
                               block_scale=block_scales(teacher, ids), **kw)
    term = DistillationTerm(settings)
    return RewardTrainingModel(student, "pointwise", terms=[term]), term, ids


def batch(ids):
    n = len(ids)
    x = {"ids": tf.constant(ids), "teacher": tf.zeros([n]), "labeled": tf.ones([n])}
    return x, tf.zeros([n])


def per_layer(term, ids):
    """``[layers, B]`` the term's distance per compared layer."""
    from rmcompress.training.distill import block_distance, token_mask

    outs = term._student_model(ids)[1:]
    teacher = term._teacher_blocks(ids)
    return np.stack([block_distance(u, v, k, b, s, token_mask(ids)).numpy()
                     for u, v, (k, b), s in zip(outs, teacher, term.projections, term._block_scale)])


def test_zero_for_the_teacher_itself_and_positive_from_the_perturbed_block_on():
    teacher = model()
    student = model()
    wrapper, term, ids = wrapped(student, teacher)
    assert term.block_names == ["block0_ffn_residual", "block1_ffn_residual", "block2_ffn_residual"]
    x, y = batch(ids)
    per_example, _ = wrapper.task_losses((x, y), training=False)
    task_only = RewardTrainingModel(student, "pointwise").task_losses((ids, y), training=False)[0]
    np.testing.assert_allclose(per_example.numpy(), task_only.numpy(), atol=1e-6)  # h = 0
    np.testing.assert_allclose(per_layer(term, ids), 0.0, atol=1e-10)

    ffn = student.get_layer("block1_ffn_out")
    ffn.set_weights([w + 0.5 for w in ffn.get_weights()])
    d = per_layer(term, ids)
    np.testing.assert_allclose(d[0], 0.0, atol=1e-10)  # block 0 untouched
    assert (d[1] > 1e-3).all() and (d[2] > 1e-3).all()
    per_example, _ = wrapper.task_losses((x, y), training=False)
    np.testing.assert_allclose(per_example.numpy() - task_only.numpy(), d.mean(axis=0), rtol=1e-4)


def test_padding_does_not_count():
    teacher, student = model(), model()
    _, term, ids = wrapped(student, teacher)
    ids = ids.copy()
    ids[:, -1] = 0
    emb = student.get_layer("token_embedding")
    w = emb.get_weights()
    w[0][0] += 3.0  # the padding token's row: only the masked positions change
    emb.set_weights(w)
    np.testing.assert_allclose(per_layer(term, ids), 0.0, atol=1e-8)


def test_gradients_reach_the_projections_and_the_student_not_the_teacher():
    teacher, student = model(), model(seed=1)
    wrapper, term, ids = wrapped(student, teacher)
    _, grads, variables, _ = wrapper.gradients(batch(ids))
    by_name = {v.name: g for g, v in zip(grads, variables)}
    kernels = [n for n in by_name if "block_projection" in n and "kernel" in n]
    assert len(kernels) == 3
    for n in kernels:
        assert by_name[n] is not None and float(tf.reduce_max(tf.abs(by_name[n]))) > 0, n
    teacher_vars = {v.ref() for v in teacher.trainable_variables}
    assert not any(v.ref() in teacher_vars for v in variables)
    first = wrapper.scorer.get_layer("block0_ffn_out").kernel
    assert float(tf.reduce_max(tf.abs(by_name[first.name]))) > 0


def test_removed_blocks_are_skipped_and_a_narrower_student_is_projected():
    teacher = model()
    student = model(block_present=[True, False, True])
    assert block_pairs(student, teacher) == ["block0_ffn_residual", "block2_ffn_residual"]
    narrow = model(width=8)
    _, term, _ = wrapped(narrow, teacher)
    assert [tuple(k.shape) for k, _ in term.projections] == [(8, 16)] * 3
    _, term, _ = wrapped(model(), teacher)
    np.testing.assert_array_equal(term.projections[0][0].numpy(), np.eye(16))  # identity when widths agree


def test_layer_names_and_patterns_and_one_line_errors():
    teacher = model()
    assert block_layer_names(teacher, ["block{i}_attn_residual"]) == [f"block{i}_attn_residual" for i in range(3)]
    assert block_layer_names(teacher, ["block1_ffn_out"]) == ["block1_ffn_out"]
    with pytest.raises(UsageError, match="has no layer 'block9_ffn_norm'") as e:
        block_layer_names(teacher, ["block9_ffn_norm"])
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="matches 'nope{i}'"):
        block_layer_names(teacher, ["nope{i}"])
    with pytest.raises(UsageError, match="block9_ffn_norm"):
        wrapped(model(), teacher, block_layers=("block9_ffn_norm",))


def test_the_bert_graph_compares_its_post_norm_stream():
    teacher = randomize(build_reward_model(ArchConfig(**{**CFG, "arch": "bert"})))
    assert block_layer_names(teacher) == [f"block{i}_ffn_norm" for i in range(3)]


def test_the_teacher_scores_by_length_where_it_may_and_padded_where_it_reads_the_padding(monkeypatch):
    """Many rows: sorted, cut batches (equal rewards and features); a model that averages over the
    padding is scored padded, exactly."""
    from rmcompress._keras import keras
    from rmcompress.training import distill

    teacher = model(seed=3)
    ids = token_ids(300, 16, 60, seed=5)
    ids[::2, 5:] = 0  # half the rows short
    cut = []
    real = distill.predict_by_length
    monkeypatch.setattr(distill, "predict_by_length", lambda *a, **k: cut.append(a[2]) or real(*a, **k))
    reward, feats = distill.teacher_outputs(teacher, ids, batch_size=64, features=True)
    want_r, want_f = distill.feature_model(teacher).predict(ids, verbose=0)
    assert cut == [0]
    np.testing.assert_allclose(reward, want_r.reshape(-1), atol=1e-5)
    np.testing.assert_allclose(feats, want_f, atol=1e-5)

    inp = keras.Input(shape=(16,), dtype="int32")
    avg = keras.Model(inp, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(
        keras.layers.Embedding(60, 4)(inp))))
    reward, none = distill.teacher_outputs(avg, ids, batch_size=64)
    assert none is None and cut == [0]
    np.testing.assert_array_equal(reward, avg.predict(ids, batch_size=64, verbose=0).reshape(-1))
