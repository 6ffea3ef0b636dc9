"""factorise: vocabulary pruning is exact on the training data (ids, tokenizer, rewards); the SVD
factorisation reproduces the truncated table and respects its error bound."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import run_pass, tiny_config
from rmcompress.compression.factorise import check_tokenizer_remap, factorise, low_rank, token_counts, vocab_keep
from rmcompress.layers.compressed import FactorizedEmbedding
from rmcompress.compression.settings import FactoriseSettings


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pointwise_file):
    from rmcompress.training.trainer import train

    return train(pointwise_file, tiny_config(arch="transformer", max_steps=4), tmp_path_factory.mktemp("f") / "m",
                 verbose=0)


def _subset(result, n=40):
    """A few training texts: most vocabulary rows are unused by them."""
    from rmcompress.data.loaders import load_data

    texts = load_data(result.bundle.metadata["data"], "pointwise").texts[:n]
    return texts, result.bundle.tokenizer.encode(texts)


def test_vocab_pruning_is_exact_on_training_rows(trained, tmp_path):
    bundle = trained.bundle
    texts, ids = _subset(trained)
    new, tok, remap, note = factorise(bundle.model, bundle.tokenizer, texts, FactoriseSettings(vocab_prune=True))
    assert note["vocab_dropped"] > 0 and tok.vocab_size == note["vocab_after"] < bundle.tokenizer.vocab_size
    # the new tokenizer encodes the training texts to exactly the remapped ids ...
    assert check_tokenizer_remap(bundle.tokenizer, tok, remap, texts) == 0
    assert np.array_equal(tok.encode(texts), remap[ids])
    # ... and the model gives exactly the same rewards on them
    np.testing.assert_array_equal(new.predict(remap[ids], verbose=0), bundle.model.predict(ids, verbose=0))
    # reserved tokens stay, unused ids map to [UNK]
    assert tok.vocabulary[:2] == ["[PAD]", "[UNK]"] and remap[0] == 0 and remap[1] == 1
    from rmcompress.compression.factorise import full_token_counts

    used = np.flatnonzero(full_token_counts(bundle.tokenizer, texts))
    assert set(np.unique(ids)) - {0} <= set(used)  # truncated words count in full (all their pieces)
    unused = np.setdiff1d(np.arange(bundle.tokenizer.vocab_size), used)
    unused = unused[unused > 1]
    assert len(unused) and np.all(remap[unused] == 1)
    # the saved vocab.txt is the pruned vocabulary, line by line
    tok.save(tmp_path)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == tok.vocabulary
    assert new.get_layer("token_embedding").input_dim == tok.vocab_size


def test_min_count_drops_rare_rows():
    counts = np.array([5, 0, 3, 1, 0, 2])
    assert list(vocab_keep(counts, 1)) == [0, 1, 2, 3, 5]
    assert list(vocab_keep(counts, 2)) == [0, 1, 2, 5]
    assert list(token_counts(np.array([[2, 2, 0], [5, 0, 0]]), 6)) == [3, 0, 2, 0, 0, 1]


def test_low_rank_matches_the_truncated_svd_and_its_error_bound():
    rng = np.random.RandomState(0)
    E = rng.randn(50, 12).astype(np.float32)
    A, B, err = low_rank(E, rank=12)
    np.testing.assert_allclose(A @ B, E, atol=1e-5)
    assert err < 1e-6
    A, B, err = low_rank(E, rank=4)
    s = np.linalg.svd(E, compute_uv=False)
    assert err == pytest.approx(np.sqrt((s[4:] ** 2).sum() / (s ** 2).sum()), rel=1e-5)
    assert np.linalg.norm(E - A @ B) / np.linalg.norm(E) == pytest.approx(err, rel=1e-4)
    # max_error picks the smallest rank within the bound
    A, B, err = low_rank(E, max_error=0.5)
    r = A.shape[1]
    assert err <= 0.5 and np.sqrt((s[r - 1:] ** 2).sum() / (s ** 2).sum()) > 0.5
    # frequency weighting: frequent rows are reproduced better
    w = np.ones(50)
    w[:5] = 1000.0
    A, B, _ = low_rank(E, w, rank=3)
    Au, Bu, _ = low_rank(E, None, rank=3)
    frequent = lambda a, b: np.linalg.norm((E - a @ b)[:5])  # noqa: E731
    assert frequent(A, B) < frequent(Au, Bu)


def test_factorised_embedding_replaces_the_table(trained):
    bundle = trained.bundle
    texts, ids = _subset(trained)
    new, tok, remap, note = factorise(bundle.model, bundle.tokenizer, texts, FactoriseSettings(vocab_prune=False, rank=4, weighting="uniform"))
    layer = new.get_layer("token_embedding")
    assert isinstance(layer, FactorizedEmbedding) and layer.rank == 4 and tok is bundle.tokenizer
    E = bundle.model.get_layer("token_embedding").get_weights()[0]
    A, B, err = low_rank(E, rank=4)
    np.testing.assert_allclose(layer.get_weights()[0] @ layer.get_weights()[1], A @ B, atol=1e-5)
    assert note["relative_error"] == pytest.approx(err)
    assert note["params_after"] == 4 * (E.shape[0] + E.shape[1]) < note["params_before"]
    from rmcompress.models.structure import count

    T, d = bundle.tokenizer.seq_len, E.shape[1]
    assert count(new).flops - count(bundle.model).flops == 2 * 4 * d * T  # the projection's multiply-adds
    # a rank that does not save parameters is skipped, not applied
    _, _, _, note = factorise(bundle.model, bundle.tokenizer, texts, FactoriseSettings(vocab_prune=False, rank=E.shape[1]))
    assert "skipped_factorisation" in note


def test_factorise_pass_keeps_the_rows_of_the_unlabeled_texts(trained, tmp_path):
    """In a recipe, ``compress --unlabeled`` texts count like training texts: a row only they use
    survives vocabulary pruning (and its text keeps its pieces); without them it is dropped."""
    import pandas as pd

    from rmcompress.compression.factorise import full_token_counts
    from rmcompress.compression.state import prepare_state
    from rmcompress.models.modeldir import load_model_dir

    texts, _ = _subset(trained, 40)
    data = tmp_path / "few.tsv"
    pd.DataFrame({"sentence": texts, "label": [i % 2 for i in range(len(texts))]}).to_csv(data, sep="\t", index=False)
    tok = trained.bundle.tokenizer
    all_texts = pd.read_csv(trained.bundle.metadata["data"], sep="\t").iloc[:, 0].astype(str).tolist()
    used = full_token_counts(tok, texts) > 0
    extra_text = next(t for t in all_texts if not used[full_token_counts(tok, [t]) > 0].all())
    new_rows = {tok.vocabulary[i] for i in np.flatnonzero((full_token_counts(tok, [extra_text]) > 0) & ~used)}
    unl = tmp_path / "unlabeled.tsv"
    pd.DataFrame({"sentence": [extra_text]}).to_csv(unl, sep="\t", index=False)
    outs = {}
    for name, extra in (("with", unl), ("without", None)):
        state = prepare_state(load_model_dir(trained.out_dir), data, {"val_fraction": 0.1}, unlabeled=extra)
        state, note = run_pass("factorise", state, vocab_prune=True)
        outs[name] = (set(state.tokenizer.vocabulary), note)
    assert new_rows and new_rows <= outs["with"][0] and not new_rows & outs["without"][0]
    assert outs["with"][1]["counted_texts"]["unlabeled"] == 1 and outs["without"][1]["counted_texts"]["unlabeled"] == 0
    assert outs["with"][1]["vocab_after"] > outs["without"][1]["vocab_after"]


def _state(trained, tmp_path, n=60, unlabeled=True):
    import pandas as pd

    from rmcompress.compression.state import prepare_state
    from rmcompress.models.modeldir import load_model_dir

    all_texts = pd.read_csv(trained.bundle.metadata["data"], sep="\t").iloc[:, 0].astype(str).tolist()
    data = tmp_path / "few.tsv"
    pd.DataFrame({"sentence": all_texts[:n], "label": [i % 2 for i in range(n)]}).to_csv(data, sep="\t", index=False)
    unl = None
    if unlabeled:
        unl = tmp_path / "unlabeled.tsv"
        pd.DataFrame({"sentence": all_texts[n:n + 30]}).to_csv(unl, sep="\t", index=False)
    return prepare_state(load_model_dir(trained.out_dir), data, {"val_fraction": 0.1}, unlabeled=unl)


def test_self_distillation_rows_carry_the_models_scores_under_a_new_tokenizer(trained, tmp_path):
    """Targets = the model's rewards on the training, unlabeled and augmented texts (that order);
    re-encoding with the pruned tokenizer keeps rows and targets aligned."""
    from rmcompress.compression.finetune import self_distillation_rows
    from rmcompress.data.loaders import PointwiseData
    from rmcompress.data.pipeline import encode

    state = _state(trained, tmp_path)
    state.augmented_raw = PointwiseData(["a varied text", "another varied one"], np.zeros(2, np.float32),
                                        "binary", "augmented")
    reencode = self_distillation_rows(state)
    texts = state.train_raw.texts + state.unlabeled_raw.texts + state.augmented_raw.texts
    expect = state.model.predict(state.tokenizer.encode(texts), verbose=0).reshape(-1)
    same = reencode(state.tokenizer)
    np.testing.assert_allclose(same.teacher, expect, atol=1e-5)
    n_train = len(state.train_raw)
    assert same.labeled.tolist() == [1.0] * n_train + [0.0] * (len(texts) - n_train)
    _, new_tok, _, _ = factorise(state.model, state.tokenizer, state.train_raw.texts, FactoriseSettings(vocab_prune=True))
    pruned = reencode(new_tok)
    assert new_tok.vocab_size < state.tokenizer.vocab_size
    np.testing.assert_array_equal(pruned.ids, encode(PointwiseData(texts, np.zeros(len(texts), np.float32),
                                                                   "binary", "x"), new_tok).ids)
    np.testing.assert_array_equal(pruned.teacher, same.teacher)


def test_factorise_pass_distill_keeps_the_model_near_the_one_it_came_from(trained, tmp_path):
    """Fine-tuning after factorisation with distill 1.0 follows the model before factorisation; the
    same steps on the labels alone pull the rewards far away from it."""

    def error(distill):
        state = _state(trained, tmp_path)
        before = state.model.predict(state.train_ids(), verbose=0).reshape(-1)
        texts = state.train_raw.texts
        state, note = run_pass("factorise", state, vocab_prune=False, rank=2, weighting="uniform", steps=40,
                                    learning_rate=1e-3, batch_size=16, distill=distill)
        after = state.model.predict(state.tokenizer.encode(texts), verbose=0).reshape(-1)
        note["rows_expected"] = len(state.train_raw) + len(state.unlabeled_raw)
        return float(np.mean((after - before) ** 2)), note

    labels_only, note0 = error(0.0)
    distilled, note = error(1.0)
    assert note["distill"] == 1.0 and note["distill_rows"] == note["rows_expected"]  # train + unlabeled
    assert note0["distill_rows"] == 0
    assert distilled < 0.25 * labels_only


def test_factorise_distill_needs_steps():
    from rmcompress.compression.recipe import Recipe
    from rmcompress.errors import RecipeError

    with pytest.raises(RecipeError, match="distill.*steps"):
        Recipe.from_dict({"name": "x", "passes": [{"factorise": {"rank": 4, "distill": 0.5}}]})
    Recipe.from_dict({"name": "x", "passes": [{"factorise": {"rank": 4, "distill": 0.5, "steps": 10}}]})


def test_compress_unlabeled_texts_need_a_pass_that_distills(trained, tmp_path):
    """``compress --unlabeled`` is refused by a recipe that cannot use label-free texts and accepted
    by a factorise pass that distills (its note counts the training + unlabeled rows)."""
    from rmcompress.compression.pipeline import compress
    from rmcompress.errors import UsageError

    state = _state(trained, tmp_path)  # writes few.tsv and unlabeled.tsv
    data, unl = tmp_path / "few.tsv", tmp_path / "unlabeled.tsv"
    export = {"formats": ["tflite"], "latency_runs": 0}
    with pytest.raises(UsageError, match="no pass that distills"):
        compress(trained.out_dir, {"name": "x", "passes": [{"factorise": {"rank": 4, "steps": 2}}], "export": export},
                 data, tmp_path / "o1", unlabeled=unl)
    assert not (tmp_path / "o1").exists()
    report = compress(trained.out_dir, {"name": "x", "data": {"val_fraction": 0.1}, "export": export, "passes": [
        {"factorise": {"rank": 4, "steps": 4, "distill": 0.5, "batch_size": 8}}]}, data, tmp_path / "o2", unlabeled=unl)
    note = next(n for n in report["passes"] if n["pass"] == "factorise")
    assert note["distill_rows"] == len(state.train_raw) + len(state.unlabeled_raw)


def test_two_tier_factorisation_keeps_the_most_used_rows_exactly(trained, tmp_path):
    """``full_rows`` N: the vocabulary is reordered by use (reserved and specials first), ids < N
    read exact rows of the old table, the others ``A[id - N] @ B`` with A, B the SVD of those rows;
    the reordered tokenizer re-tokenises the texts to the remapped ids; the layer saves, loads and
    converts to TFLite with the same scores."""
    from rmcompress.compression.factorise import check_tokenizer_remap, frequency_order, full_token_counts
    from rmcompress.models.structure import count
    from rmcompress.models.modeldir import load_model_dir, save_model_dir

    bundle = trained.bundle
    texts, _ = _subset(trained, 200)
    n, r = 12, 4
    new, tok, remap, note = factorise(bundle.model, bundle.tokenizer, texts, FactoriseSettings(vocab_prune=True, rank=r, weighting="frequency", full_rows=n))
    layer = new.get_layer("token_embedding")
    assert isinstance(layer, FactorizedEmbedding) and layer.full_rows == n and note["full_rows"] == n
    counts = full_token_counts(bundle.tokenizer, texts)
    keep = np.flatnonzero(np.isin(np.arange(len(remap)), np.flatnonzero(counts >= 1)) | (np.arange(len(remap)) < 2))
    order = frequency_order(keep, counts, bundle.tokenizer.special_ids().values())
    assert [tok.vocabulary[i] for i in range(len(order))] == [bundle.tokenizer.vocabulary[i] for i in order]
    used = counts[order[2:]]
    assert np.all(np.diff(used) <= 0)  # by descending use after the reserved ids
    assert check_tokenizer_remap(bundle.tokenizer, tok, remap, texts) == 0
    E = bundle.model.get_layer("token_embedding").get_weights()[0][order]
    A, B, F = layer.get_weights()
    np.testing.assert_array_equal(F, E[:n])
    A2, B2, _ = low_rank(E[n:], counts[order][n:] + 1.0, rank=r)
    np.testing.assert_allclose(A @ B, A2 @ B2, atol=1e-5)
    ids = np.array([[0, 1, n - 1, n, len(order) - 1]])
    out = layer(ids).numpy()[0]
    np.testing.assert_allclose(out[:3], F[[0, 1, n - 1]], atol=1e-6)
    np.testing.assert_allclose(out[3:], (A @ B)[[0, len(order) - 1 - n]], atol=1e-5)
    V, d = E.shape
    assert note["params_after"] == n * d + r * (V - n + d)
    assert count(new).params == count(bundle.model).params - len(remap) * d + note["params_after"]
    # serialisation and TFLite: same scores as the Keras model
    d_out = save_model_dir(tmp_path / "two-tier", new, tok, bundle.metadata)
    again = load_model_dir(d_out)
    rows = tok.encode(texts[:16])
    np.testing.assert_allclose(again.model.predict(rows, verbose=0), new.predict(rows, verbose=0), atol=1e-5)
    from rmcompress.runtime.tflite import TFLiteRunner, convert

    tfl = TFLiteRunner(convert(new))
    np.testing.assert_allclose(tfl.score(rows).reshape(-1), new.predict(rows, verbose=0).reshape(-1), atol=1e-4)


def test_full_rows_needs_a_rank():
    from rmcompress.compression.recipe import Recipe
    from rmcompress.errors import RecipeError

    with pytest.raises(RecipeError, match="full_rows"):
        Recipe.from_dict({"name": "x", "passes": [{"factorise": {"full_rows": 100}}]})


def test_full_rows_covering_the_whole_vocabulary_keeps_the_table_exact(trained):
    """A recipe written for a large vocabulary (full_rows 1000) on a small one: nothing is factorised,
    the reordered table is exact and the rewards are unchanged."""
    bundle = trained.bundle
    texts, _ = _subset(trained, 40)
    new, tok, remap, note = factorise(bundle.model, bundle.tokenizer, texts, FactoriseSettings(vocab_prune=True, rank=4, full_rows=100_000))
    assert "covers all" in note["skipped_factorisation"]
    assert not isinstance(new.get_layer("token_embedding"), FactorizedEmbedding)
    np.testing.assert_allclose(new.predict(tok.encode(texts), verbose=0),
                               bundle.model.predict(bundle.tokenizer.encode(texts), verbose=0), atol=1e-5)


def _with_unseen_words(trained, n=40):
    """Training texts that use part of the vocabulary, and held-out texts built from the pieces they
    never use (so pruning drops them)."""
    from rmcompress.compression.factorise import full_token_counts

    texts, _ = _subset(trained, n)
    tok = trained.bundle.tokenizer
    counts = full_token_counts(tok, texts)
    unseen = [w for i, w in enumerate(tok.vocabulary) if counts[i] == 0 and i > 1 and w.isalpha()][:12]
    assert len(unseen) >= 6
    held = [" ".join(unseen[i:i + 3]) + " " + texts[i] for i in range(0, 12, 3)]
    return texts, held, unseen


@pytest.mark.parametrize("mode", ["unk", "nearest"])
def test_unseen_tokens_keep_their_pieces_and_read_a_kept_row(trained, mode):
    """``unseen_tokens`` unk/nearest: the dropped pieces stay in the tokenizer after the kept ones,
    so held-out texts split exactly as under the source vocabulary; a TokenRemap sends each to the
    [UNK] row or to the kept row nearest by cosine; training rows score exactly as with ``split``."""
    from rmcompress.layers.encoder import TokenRemap

    bundle = trained.bundle
    texts, held, unseen = _with_unseen_words(trained)
    split, tok_s, remap_s, _ = factorise(bundle.model, bundle.tokenizer, texts, FactoriseSettings(vocab_prune=True))
    new, tok, remap, note = factorise(bundle.model, bundle.tokenizer, texts,
                                      FactoriseSettings(vocab_prune=True, unseen_tokens=mode))
    V = bundle.tokenizer.vocab_size
    kept = tok_s.vocab_size
    assert tok.vocab_size == V and tok.vocabulary[:kept] == tok_s.vocabulary
    assert note["aliased_tokens"] == V - kept and note["unseen_tokens"] == mode and note["remap_bytes"] == 2 * V
    # every text, held-out ones included, splits into the source's pieces (a bijection of ids)
    assert sorted(remap[:V]) == list(range(V))
    assert check_tokenizer_remap(bundle.tokenizer, tok, remap, texts + held) == 0
    # ``split`` reads the unseen pieces as [UNK] or other pieces; here each keeps an id of its own
    assert len(np.unique(tok.encode(held))) > len(np.unique(tok_s.encode(held)))
    # the table keeps only the kept rows; the remap reads them
    assert new.get_layer("token_embedding").input_dim == kept
    table = new.get_layer("token_remap").get_weights()[0]
    assert isinstance(new.get_layer("token_remap"), TokenRemap) and table.shape == (V,) and table.dtype == np.int16
    np.testing.assert_array_equal(table[:kept], np.arange(kept))
    E = bundle.model.get_layer("token_embedding").get_weights()[0]
    old_of_new = np.argsort(remap[:V])  # new id -> old id
    unk_new = tok.vocabulary.index("[UNK]")
    if mode == "unk":
        assert np.all(table[kept:] == unk_new)
    else:
        unit = E / np.linalg.norm(E, axis=1, keepdims=True)
        cand = old_of_new[2:kept]  # kept ordinary tokens ([PAD], [UNK] are never targets)
        for new_id in range(kept, V):
            best = cand[np.argmax(unit[cand] @ unit[old_of_new[new_id]])]
            assert old_of_new[table[new_id]] == best
    # a held-out text reads, for each unseen piece, the target's row of the source table
    ids = tok.encode(held[:1])
    emb = keras_model_output(new, "token_embedding", ids)
    src_rows = E[old_of_new[table[ids[0]]]]
    np.testing.assert_allclose(emb[0], src_rows, atol=1e-6)
    # training rows: exactly the rewards of the source and of ``split``
    ids_t = bundle.tokenizer.encode(texts)
    np.testing.assert_array_equal(new.predict(remap[ids_t], verbose=0), bundle.model.predict(ids_t, verbose=0))
    np.testing.assert_array_equal(new.predict(remap[ids_t], verbose=0), split.predict(remap_s[ids_t], verbose=0))


def keras_model_output(model, layer, ids):
    from rmcompress._keras import keras

    return keras.Model(model.inputs, model.get_layer(layer).output)(ids).numpy()


def test_unseen_tokens_nearest_with_a_factorised_table_saves_and_converts(trained, tmp_path):
    """Two tiers plus ``nearest``: the remap sits before the factorised table; the model directory
    saves and loads with the full tokenizer, TFLite scores held-out texts as Keras does, and a second
    factorise pass says why it cannot apply."""
    from rmcompress.compression.factorise import not_applicable
    from rmcompress.models.modeldir import load_model_dir, save_model_dir
    from rmcompress.runtime.tflite import TFLiteRunner, convert

    bundle = trained.bundle
    texts, held, _ = _with_unseen_words(trained, 200)
    new, tok, remap, note = factorise(bundle.model, bundle.tokenizer, texts, FactoriseSettings(
        vocab_prune=True, rank=4, full_rows=12, unseen_tokens="nearest"))
    assert isinstance(new.get_layer("token_embedding"), FactorizedEmbedding) and note["aliased_tokens"] > 0
    d_out = save_model_dir(tmp_path / "aliased", new, tok, bundle.metadata)
    again = load_model_dir(d_out)
    assert again.tokenizer.vocabulary == tok.vocabulary
    rows = tok.encode(held + texts[:8])
    np.testing.assert_allclose(again.model.predict(rows, verbose=0), new.predict(rows, verbose=0), atol=1e-6)
    tfl = TFLiteRunner(convert(new))
    np.testing.assert_allclose(tfl.score(rows).reshape(-1), new.predict(rows, verbose=0).reshape(-1), atol=1e-4)
    assert "TokenRemap" in not_applicable(new, tok)


def test_unseen_tokens_need_vocabulary_pruning():
    from rmcompress.compression.recipe import Recipe
    from rmcompress.errors import RecipeError

    with pytest.raises(RecipeError, match="unseen_tokens"):
        Recipe.from_dict({"name": "x", "passes": [{"factorise": {"vocab_prune": False, "unseen_tokens": "unk"}}]})


def test_factorise_pass_with_unseen_tokens_checks_validation_texts_and_fine_tunes(trained, tmp_path):
    """In a recipe, ``unseen_tokens: nearest`` keeps the whole vocabulary in the state's tokenizer,
    checks that validation texts keep their pieces too, and fine-tunes the model with the remap."""
    import pandas as pd

    from rmcompress.compression.state import prepare_state
    from rmcompress.models.modeldir import load_model_dir

    texts, _ = _subset(trained, 40)
    data = tmp_path / "few.tsv"
    pd.DataFrame({"sentence": texts, "label": [i % 2 for i in range(len(texts))]}).to_csv(data, sep="\t", index=False)
    state = prepare_state(load_model_dir(trained.out_dir), data, {"val_fraction": 0.2})
    V = state.tokenizer.vocab_size
    state, note = run_pass("factorise", state, vocab_prune=True, unseen_tokens="nearest", steps=2, batch_size=8)
    assert note["aliased_tokens"] > 0 and state.tokenizer.vocab_size == V
    assert note["tokenizer_check_rows"] == len(state.train_raw.all_texts) + len(state.val_raw.all_texts)
    assert (note["steps"], note["steps_requested"]) == (2, 2) and np.isfinite(note["final_train_loss"])
    assert np.all(np.isfinite(state.model.predict(state.val.ids, verbose=0)))


def test_unseen_tokens_do_not_change_the_fine_tuning(trained, tmp_path):
    """The training texts hold no unseen token, so their ids (and the fine-tuning) are those of
    ``split``: the same seed gives the same kept table and the same rewards on training rows."""
    import pandas as pd

    from rmcompress.compression.state import prepare_state
    from rmcompress.models.modeldir import load_model_dir

    texts, _ = _subset(trained, 40)
    data = tmp_path / "few.tsv"
    pd.DataFrame({"sentence": texts, "label": [i % 2 for i in range(len(texts))]}).to_csv(data, sep="\t", index=False)
    out = {}
    for mode in ("split", "unk"):
        state = prepare_state(load_model_dir(trained.out_dir), data, {"val_fraction": 0.2})
        state, _ = run_pass("factorise", state, vocab_prune=True, unseen_tokens=mode, steps=3, batch_size=8)
        out[mode] = (state.model.get_layer("token_embedding").get_weights()[0],
                     state.model.predict(state.train.ids, verbose=0))
    np.testing.assert_array_equal(out["split"][0], out["unk"][0])
    np.testing.assert_array_equal(out["split"][1], out["unk"][1])


def test_unseen_tokens_need_min_count_one():
    from rmcompress.compression.recipe import Recipe
    from rmcompress.errors import RecipeError

    with pytest.raises(RecipeError, match="min_count"):
        Recipe.from_dict({"name": "x", "passes": [{"factorise": {"min_count": 2, "unseen_tokens": "nearest"}}]})
