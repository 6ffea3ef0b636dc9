"""Word-replacement augmentation (rmcompress.data.augment): neighbours, variants, errors."""
import numpy as np
import pytest

from rmcompress.data.augment import augment_texts, neighbour_table, token_vectors
from rmcompress.errors import UsageError

VOCAB = ["[PAD]", "[UNK]", "##ing", "good", "great", "bad", "awful", "film", "movie", "a", "of", "12"]


def vectors():
    v = np.zeros((len(VOCAB), 4), np.float32)
    v[:, 3] = 0.01 * np.arange(len(VOCAB))          # distinct, tiny
    for w, row in {"good": [1, .1, 0], "great": [1, .2, 0], "bad": [.8, -.5, 0], "awful": [.7, -.6, 0],
                   "film": [0, 0, 1], "movie": [0, .05, 1]}.items():
        v[VOCAB.index(w), :3] = row
    return v


def test_neighbours_are_nearest_whole_words_by_cosine():
    table = neighbour_table(vectors(), VOCAB, k=2)
    # whole words only: no specials, no ## pieces, nothing shorter than 3 letters, no digits
    assert set(table) == {"good", "great", "bad", "awful", "film", "movie"}
    assert table["film"][0] == "movie" and table["movie"][0] == "film"
    assert table["good"][0] == "great" and table["bad"][0] == "awful"
    assert all(w not in nn for w, nn in table.items())            # never itself
    # brute force agrees
    v = vectors()
    rows = [VOCAB.index(w) for w in table]
    u = v[rows] / np.linalg.norm(v[rows], axis=1, keepdims=True)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    for r, w in enumerate(table):
        assert table[w] == [list(table)[j] for j in np.argsort(-sim[r])[:2]]


def test_chunked_table_equals_one_chunk():
    assert neighbour_table(vectors(), VOCAB, k=3, chunk=2) == neighbour_table(vectors(), VOCAB, k=3)


def test_variants_replace_only_table_words_and_skip_short_texts():
    table = {"good": ["great"], "film": ["movie"]}
    texts = ["a good film of a good year", "good film"]
    out = augment_texts(texts, table, copies=5, p=1.0, min_words=3, seed=0)
    assert out == ["a great movie of a great year"]               # p=1: all replaced; duplicates dropped
    out = augment_texts(texts * 50, table, copies=3, p=0.5, min_words=3, seed=1)
    assert out and all(len(t.split()) == 7 for t in out)
    assert all(w in {"a", "of", "year", "good", "great", "film", "movie"} for t in out for w in t.split())
    assert "a good film of a good year" not in out                # a copy of the source is not a variant
    assert out == augment_texts(texts * 50, table, copies=3, p=0.5, min_words=3, seed=1)   # seeded


def test_case_insensitive_lookup():
    assert augment_texts(["A Good Film Indeed"], {"good": ["bad"]}, copies=1, p=1.0, min_words=1) == [
        "A bad Film Indeed"]


def test_bad_settings_are_refused():
    with pytest.raises(UsageError, match="copies"):
        augment_texts(["x y"], {}, copies=0)
    with pytest.raises(UsageError, match="probability"):
        augment_texts(["x y"], {}, p=0.0)
    with pytest.raises(UsageError, match="whole-word"):
        neighbour_table(vectors(), VOCAB, k=6)
    with pytest.raises(UsageError, match="embedding rows"):
        neighbour_table(vectors()[:3], VOCAB)


def test_token_vectors_of_a_suite_model(trained_models):
    from rmcompress.models.modeldir import load_model_dir

    bundle = load_model_dir(trained_models["transformer"].out_dir)
    v = token_vectors(bundle.model, len(bundle.tokenizer.vocabulary))
    w = bundle.model.get_layer("token_embedding").get_weights()[0]
    np.testing.assert_allclose(v, w[: len(v)], atol=1e-6)


def test_budget_pass_distills_on_augmented_texts(trained_models, pointwise_file, tmp_path):
    """``augment: k``: k variants of every long enough training/unlabeled text join the distillation
    rows (the note counts them); the source model scores them like unlabeled texts."""
    from rmcompress.compression.pipeline import compress
    from rmcompress.data.loaders import load_pointwise

    src = trained_models["transformer"]
    long_texts = sum(len(t.split()) >= 3 for t in load_pointwise(pointwise_file).texts)
    assert long_texts > 0
    recipe = {"name": "a", "passes": [{"budget": {"flops_fraction": 0.5, "method": "taylor", "steps": 4,
                                                  "batch_size": 16, "distill": 0.8, "augment": 2,
                                                  "augment_replace": 0.5, "augment_min_words": 3}}]}
    rep = compress(src.out_dir, recipe, pointwise_file, tmp_path / "c", latency_runs=0)
    note = rep["passes"][0]
    assert 0 < note["n_augmented"] <= 2 * long_texts and note["n_unlabeled"] == note["n_augmented"]
    assert note["achieved_flops_fraction"] <= 0.5


def test_budget_pass_augment_needs_distill_and_skips_pairs(trained_models, pairwise_file, tmp_path):
    from rmcompress.compression.pipeline import compress
    from rmcompress.compression.recipe import Recipe
    from rmcompress.errors import RecipeError

    path = tmp_path / "r.yaml"
    path.write_text("name: r\npasses:\n  - budget: {flops_fraction: 0.5, method: taylor, augment: 2}\n")
    with pytest.raises(RecipeError, match=r"r\.yaml.*augment.*distill"):
        Recipe.load(path)
    path.write_text("name: r\npasses:\n  - budget: {flops_fraction: 0.5, distill: 0.5, augment: -1}\n")
    with pytest.raises(RecipeError, match="augment"):
        Recipe.load(path)
    # a shipped recipe that augments still runs on a pairwise model: the pass skips it and says so
    recipe = {"name": "p", "passes": [{"budget": {"flops_fraction": 0.5, "method": "taylor", "steps": 2,
                                                  "batch_size": 16, "distill": 0.5, "augment": 2}}]}
    note = compress(trained_models["pairwise"].out_dir, recipe, pairwise_file, tmp_path / "p",
                    latency_runs=0)["passes"][0]
    assert note["n_augmented"] == 0 and note["augment"].startswith("skipped: pairwise")


def test_train_distills_on_augmented_texts(trained_models, pointwise_file, tmp_path):
    """``train --teacher T --augment k``: variants of the long training/unlabeled texts join the
    teacher-scored rows (labeled = 0), counted in the report; the teacher scores them."""
    import pandas as pd

    from tests.helpers import tiny_config
    from rmcompress.data.loaders import load_pointwise
    from rmcompress.training.trainer import train

    texts = load_pointwise(pointwise_file).texts
    long_texts = [f"{a} and {b}" for a, b in zip(texts[:20], texts[20:40])]   # >= 10 words mostly
    unl = tmp_path / "u.tsv"
    pd.DataFrame({"sentence": long_texts}).to_csv(unl, sep="\t", index=False)
    teacher = trained_models["transformer"].out_dir
    r = train(pointwise_file, tiny_config(teacher=str(teacher), unlabeled=str(unl), augment=2, max_steps=2),
              tmp_path / "s", verbose=0)
    n_aug = r.report["n_augmented"]
    assert 0 < n_aug <= 2 * sum(len(t.split()) >= 10 for t in texts + long_texts)
    assert r.report["n_unlabeled"] == 20 + n_aug
    enc = r.train_data
    assert enc.labeled[-n_aug:].max() == 0.0 and np.isfinite(enc.teacher[-n_aug:]).all()


def test_train_augment_errors():
    from tests.helpers import tiny_config

    with pytest.raises(UsageError, match="--augment needs --teacher"):
        tiny_config(augment=2)
    with pytest.raises(UsageError, match="--augment is pointwise only"):
        tiny_config(task="pairwise", teacher="t", augment=2)
    with pytest.raises(UsageError, match="--augment -1"):
        tiny_config(teacher="t", augment=-1)
