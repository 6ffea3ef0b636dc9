"""factorise: vocabulary pruning is exact on the training data (ids, tokenizer, rewards); the SVD
factorisation reproduces the truncated table and respects its error bound."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_config
from rmcompress.compress.factorise import check_tokenizer_remap, factorise, low_rank, token_counts, vocab_keep
from rmcompress.compress.layers import FactorizedEmbedding


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
    new, tok, remap, note = factorise(bundle.model, bundle.tokenizer, texts, vocab_prune=True)
    assert note["vocab_dropped"] > 0 and tok.vocab_size == note["vocab_after"] < bundle.tokenizer.vocab_size
    # the new tokenizer encodes the training texts to exactly the remapped ids ...
    assert check_tokenizer_remap(bundle.tokenizer, tok, remap, texts) == 0
    assert np.array_equal(tok.encode(texts), remap[ids])
    # ... and the model gives exactly the same rewards on them
    np.testing.assert_array_equal(new.predict(remap[ids], verbose=0), bundle.model.predict(ids, verbose=0))
    # reserved tokens stay, unused ids map to [UNK]
    assert tok.vocabulary[:2] == ["[PAD]", "[UNK]"] and remap[0] == 0 and remap[1] == 1
    from rmcompress.compress.factorise import full_token_counts

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
    new, tok, remap, note = factorise(bundle.model, bundle.tokenizer, texts, vocab_prune=False, rank=4,
                                      weighting="uniform")
    layer = new.get_layer("token_embedding")
    assert isinstance(layer, FactorizedEmbedding) and layer.rank == 4 and tok is bundle.tokenizer
    E = bundle.model.get_layer("token_embedding").get_weights()[0]
    A, B, err = low_rank(E, rank=4)
    np.testing.assert_allclose(layer.get_weights()[0] @ layer.get_weights()[1], A @ B, atol=1e-5)
    assert note["relative_error"] == pytest.approx(err)
    assert note["params_after"] == 4 * (E.shape[0] + E.shape[1]) < note["params_before"]
    from rmcompress.complexity import count

    T, d = bundle.tokenizer.seq_len, E.shape[1]
    assert count(new).flops - count(bundle.model).flops == 2 * 4 * d * T  # the projection's multiply-adds
    # a rank that does not save parameters is skipped, not applied
    _, _, _, note = factorise(bundle.model, bundle.tokenizer, texts, vocab_prune=False, rank=E.shape[1])
    assert "skipped_factorisation" in note


def test_factorise_pass_keeps_the_rows_of_the_unlabeled_texts(trained, tmp_path):
    """In a recipe, ``compress --unlabeled`` texts count like training texts: a row only they use
    survives vocabulary pruning (and its text keeps its pieces); without them it is dropped."""
    import pandas as pd

    from rmcompress.compress.factorise import full_token_counts
    from rmcompress.compress.passes import factorise_pass
    from rmcompress.compress.state import prepare_state
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
        state, note = factorise_pass(state, vocab_prune=True)
        outs[name] = (set(state.tokenizer.vocabulary), note)
    assert new_rows and new_rows <= outs["with"][0] and not new_rows & outs["without"][0]
    assert outs["with"][1]["counted_texts"]["unlabeled"] == 1 and outs["without"][1]["counted_texts"]["unlabeled"] == 0
    assert outs["with"][1]["vocab_after"] > outs["without"][1]["vocab_after"]
