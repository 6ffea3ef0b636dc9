"""``factorise``: shrink the token embedding, the bulk of a small text model's parameters.

**Vocabulary pruning** (``vocab_prune``): rows of token ids that occur fewer than ``min_count`` times
in the training texts are dropped ([PAD] and [UNK] always stay). In a recipe the texts given to
``compress --unlabeled`` count as training texts: a distilling pass trained on them, and a pretrained
encoder's rows for their words are trained rows (dropping them turned 4.4% of the SST-2 validation
tokens into [UNK] and cost the fine-tuned MiniLM itself 1.5 points). Counts come from the *untruncated*
tokenisation: a word cut by the ``seq_len`` truncation still needs all its pieces, or re-tokenising
it with the smaller vocabulary would turn the whole word into [UNK]. The tokenizer keeps the
surviving tokens in their old order, so ``new_id = rank of old_id among the kept ids``. Exactness:
WordPiece takes the longest matching piece; every piece used on the training texts is kept and the
new vocabulary is a subset of the old one, so the training texts tokenise to the same pieces and the
model gives the same rewards on them (checked on a sample of training texts; the test checks the
rewards).

**Tokens no counted text uses** (``unseen_tokens``), the pieces pruning drops:

- ``split``: they leave the vocabulary; a word made of them re-tokenises into kept pieces (``##``
  fragments the model never read together) or becomes [UNK].
- ``unk`` / ``nearest``: they stay in the tokenizer, after the kept ones (``new_id = len(kept) + rank
  among the dropped ids``), so every text splits into exactly the pieces the source vocabulary gives it,
  and a ``TokenRemap`` before the table sends each of their ids to a kept row: the [UNK] row
  (``unk``) or the row of the kept ordinary token whose row of the table before the pass is nearest
  by cosine, ``argmax_k <E_j, E_k> / (|E_j| |E_k|)`` (``nearest``; [PAD], [UNK] and the tokenizer's
  specials are never targets). The table keeps only the kept rows; the remap is one id per
  vocabulary token (int16 up to 32,768 kept rows, else int32: 2 or 4 bytes each, 0 params, 0 FLOPs).
  On the counted texts the ids, and so the rewards and a fine-tuning on them, are those of ``split``
  (the ``augment`` variants a distilling fine-tune adds hold other words: they differ). Needs
  ``min_count`` 1, so that no counted text reads a remapped row. Both need rows the model learned: a
  pretrained encoder has one for every token; a model trained from scratch on these texts never
  trained the rows of tokens they do not use, so ``split`` stays the default.

**Low-rank factorisation** (``rank`` or ``max_error``): ``E [V, d] ~ A [V, r] @ B [r, d]`` from the
SVD of ``D E`` with ``D = diag(sqrt(count + 1))`` (``weighting: frequency``, frequent rows matter
more) or ``D = I`` (``uniform``): ``A = D^-1 U_r S_r``, ``B = V_r^T``. ``max_error`` picks the
smallest ``r`` with ``||D (E - A B)||_F / ||D E||_F <= max_error``. Applied only when it lowers the
parameter count (``r (V + d) < V d``). The Embedding becomes :class:`FactorizedEmbedding`.

**Two tiers** (``full_rows`` ``N`` > 0, with ``rank`` or ``max_error``): the kept vocabulary is
reordered -- the reserved tokens and the tokenizer's specials first, then by descending count in
the counted texts (ties: old id) -- so the ``N`` most used tokens get ids below ``N`` and keep their
rows exactly; only the other ``V - N`` rows are factorised (SVD as above, over those rows;
``max_error`` bounds their own error). ``N d + r (V - N + d)`` params. When ``N`` covers every kept
row the table stays exact (reordered) and the note says ``skipped_factorisation``. Token frequencies are
Zipfian, so at the same size this leaves far less of the table's weighted error (measured on the
compressed MiniLM's table: 0.27 with N = 1,000 at rank 173 against 0.37 at rank 192, and 1.9 points
of validation accuracy back before any fine-tuning). The tokenizer order changes, not its
segmentation: WordPiece depends on the set of pieces, not their ids.

**Any model with one token table**: the Embedding read by the token ids (any name). Rows past the
tokenizer's vocabulary (a user's table larger than the vocabulary) are never read and are dropped.
With ``mask_zero`` the padding id stays 0 ([PAD] is always kept first), so pruning keeps the
mask; the low-rank step is skipped (a factorised table carries no mask; the note says so).
:func:`not_applicable` says why a model has no table to factorise; the recipe pass then records
that reason and leaves the model as it is.
"""
from __future__ import annotations

import numpy as np

from rmcompress._keras import keras
from rmcompress.compression.graph import Graph, layer_entry, rebuild
from rmcompress.layers.compressed import FactorizedEmbedding
from rmcompress.layers.encoder import TokenRemap, remap_dtype
from rmcompress.compression.settings import FactoriseSettings
from rmcompress.data.tokenizer import RESERVED, Tokenizer
from rmcompress.errors import ModelError
from rmcompress._keras import tf


def _remaps(model: keras.Model, g: Graph) -> dict[str, str]:
    """``{TokenRemap layer: the input it reads}`` for every remap fed directly by a model input."""
    inputs = {l.name for l in model.layers if isinstance(l, keras.layers.InputLayer)}
    return {l.name: g.inputs_of(l.name)[0] for l in model.layers
            if isinstance(l, TokenRemap) and len(g.inputs_of(l.name)) == 1 and g.inputs_of(l.name)[0] in inputs}


def token_embedding_names(model: keras.Model) -> list[str]:
    """Embedding layers fed by the token-id input, directly or through a ``TokenRemap``."""
    inputs = {l.name for l in model.layers if isinstance(l, keras.layers.InputLayer)}
    g = Graph(model)
    readers = inputs | set(_remaps(model, g))
    return [l.name for l in model.layers
            if isinstance(l, (keras.layers.Embedding, FactorizedEmbedding))
            and set(g.inputs_of(l.name)) <= readers]


def not_applicable(model: keras.Model, tokenizer: Tokenizer) -> str | None:
    """Why :func:`factorise` cannot apply to ``model`` (``None``: it can): it needs exactly one plain
    ``Embedding`` read by the token ids, with a row for every id of ``tokenizer``."""
    names = token_embedding_names(model)
    if len(names) != 1:
        return (f"expected one token Embedding read by the token ids, found "
                f"{', '.join(repr(n) for n in names) if names else 'none'}")
    remapped = set(Graph(model).inputs_of(names[0])) & set(_remaps(model, Graph(model)))
    if remapped:
        return (f"the token ids reach {names[0]!r} through the TokenRemap {sorted(remapped)[0]!r} "
                "(its rows were pruned or remapped already)")
    layer = model.get_layer(names[0])
    if isinstance(layer, FactorizedEmbedding):
        return f"layer {names[0]!r} is already factorised"
    rows = int(layer.input_dim)
    if rows < tokenizer.vocab_size:
        return (f"embedding {names[0]!r} has {rows} rows but the tokenizer {tokenizer.vocab_size} tokens; "
                "ids past its table cannot be remapped")
    return None


def token_counts(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Occurrences of each token id in ``ids`` (padding id 0 included)."""
    return np.bincount(np.asarray(ids, np.int64).reshape(-1), minlength=vocab_size)[:vocab_size]


def full_token_counts(tokenizer: Tokenizer, texts, batch_size: int = 2048) -> np.ndarray:
    """Occurrences of each token id in the untruncated WordPiece tokenisation of ``texts``."""

    counts = np.zeros(tokenizer.vocab_size, np.int64)
    texts = list(texts)
    fn = tf.function(lambda t: tf.cast(tokenizer.layer.tokenize(t).flat_values, tf.int32),
                     input_signature=[tf.TensorSpec([None], tf.string)])
    for i in range(0, len(texts), batch_size):
        flat = fn(tf.constant(texts[i:i + batch_size])).numpy()
        counts += np.bincount(flat, minlength=tokenizer.vocab_size)[: tokenizer.vocab_size]
    return counts


def vocab_keep(counts: np.ndarray, min_count: int = 1) -> np.ndarray:
    """Sorted old ids to keep: the reserved tokens and every id used at least ``min_count`` times."""
    keep = counts >= min_count
    keep[: len(RESERVED)] = True
    return np.flatnonzero(keep)


def remap_table(keep: np.ndarray, vocab_size: int, unk_id: int = 1) -> np.ndarray:
    """``old id -> new id``; dropped ids map to [UNK]."""
    table = np.full(vocab_size, unk_id, np.int32)
    table[keep] = np.arange(len(keep), dtype=np.int32)
    return table


def nearest_rows(E: np.ndarray, queries: np.ndarray, candidates: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each row id in ``queries``, the id in ``candidates`` whose row of ``E`` has the largest
    cosine similarity with it (ties: the first candidate)."""
    queries, candidates = np.asarray(queries, np.int64), np.asarray(candidates, np.int64)
    if not len(candidates):
        raise ModelError("factorise: unseen_tokens nearest needs at least one kept ordinary token")
    unit = np.asarray(E, np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    K = unit[candidates]
    out = np.empty(len(queries), np.int64)
    for i in range(0, len(queries), chunk):
        out[i:i + chunk] = candidates[np.argmax(unit[queries[i:i + chunk]] @ K.T, axis=1)]
    return out


def alias_targets(E: np.ndarray, keep: np.ndarray, dropped: np.ndarray, mode: str, unk_id: int,
                  not_targets) -> np.ndarray:
    """The ``TokenRemap`` table of ``unseen_tokens`` ``unk``/``nearest`` (module docstring): new id ->
    kept row, identity on the ``len(keep)`` kept ids, then one entry per ``dropped`` old id; ``E`` is
    the table before the pass (old ids), ``not_targets`` old ids never chosen by ``nearest``."""
    keep, dropped = np.asarray(keep, np.int64), np.asarray(dropped, np.int64)
    new_of = np.full(len(E), -1, np.int64)
    new_of[keep] = np.arange(len(keep))
    if mode == "unk":
        tail = np.full(len(dropped), new_of[unk_id], np.int64)
    elif mode == "nearest":
        candidates = keep[~np.isin(keep, np.asarray(list(not_targets), np.int64))]
        tail = new_of[nearest_rows(E, dropped, candidates)]
    else:
        raise ValueError(f"alias_targets: mode {mode!r}")
    return np.concatenate([np.arange(len(keep)), tail]).astype(np.int32)


def frequency_order(keep: np.ndarray, counts: np.ndarray, specials) -> np.ndarray:
    """``keep`` (old ids) reordered: the reserved ids and ``specials`` first (in id order), then the
    rest by descending ``counts[old id]`` (ties: old id)."""
    keep = np.asarray(keep, np.int64)
    front = np.isin(keep, np.union1d(np.arange(len(RESERVED)), np.asarray(list(specials), np.int64)))
    rest = keep[~front]
    rest = rest[np.lexsort((rest, -np.asarray(counts)[rest]))]
    return np.concatenate([keep[front], rest])


def low_rank(E: np.ndarray, weights: np.ndarray | None = None, rank: int | None = None,
             max_error: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """``(A, B, relative_error)`` with ``E ~ A @ B`` (module docstring); ``weights`` are row weights."""
    E = np.asarray(E, np.float64)
    w = np.ones(len(E)) if weights is None else np.sqrt(np.asarray(weights, np.float64))
    U, S, Vt = np.linalg.svd(w[:, None] * E, full_matrices=False)
    energy = np.concatenate([np.cumsum((S ** 2)[::-1])[::-1], [0.0]])  # energy[r] = sum_{j>=r} s_j^2
    total = energy[0] if energy[0] > 0 else 1.0
    if rank is None:
        if max_error is None:
            raise ValueError("low_rank needs rank or max_error")
        rank = int(np.argmax(np.sqrt(energy / total) <= max_error))
        rank = max(1, rank)
    rank = int(min(rank, len(S)))
    A = (U[:, :rank] * S[:rank]) / w[:, None]
    B = Vt[:rank]
    return A.astype(np.float32), B.astype(np.float32), float(np.sqrt(energy[rank] / total))


def factorise(model: keras.Model, tokenizer: Tokenizer, train_texts,
              settings: FactoriseSettings = FactoriseSettings()) -> tuple[keras.Model, Tokenizer, np.ndarray, dict]:
    """Return ``(model, tokenizer, remap, note)``; ``remap[old_id] = new_id`` (identity if neither
    pruning nor ``full_rows``). ``train_texts``: the training texts (counted untruncated, see module
    docstring); of ``settings`` this reads ``vocab_prune``, ``min_count``, ``rank``, ``max_error``,
    ``weighting`` and ``full_rows`` (the two-tier form, module docstring)."""
    vocab_prune, min_count, rank, max_error = (settings.vocab_prune, settings.min_count, settings.rank,
                                               settings.max_error)
    weighting, full_rows = settings.weighting, settings.full_rows
    problem = not_applicable(model, tokenizer)
    if problem:
        raise ModelError(f"factorise: {problem}")
    name = token_embedding_names(model)[0]
    layer = model.get_layer(name)
    masked = bool(layer.get_config().get("mask_zero"))
    E = layer.get_weights()[0]
    V, d = E.shape
    counts = full_token_counts(tokenizer, train_texts)
    note = {"layer": name, "vocab_before": int(V), "width": int(d), "params_before": int(V * d)}
    if V > tokenizer.vocab_size:  # rows no token id reaches
        note["unreachable_rows_dropped"] = int(V - tokenizer.vocab_size)
    keep = vocab_keep(counts, min_count) if vocab_prune else np.arange(tokenizer.vocab_size)
    specials = tokenizer.special_ids()  # bert mode: [CLS]/[SEP] are added by encode, never counted
    keep = np.union1d(keep, np.asarray(list(specials.values()), np.int64))
    full_rows = int(full_rows or 0)
    if full_rows:
        if rank is None and max_error is None:
            raise ModelError("factorise: full_rows needs rank or max_error (the other rows are factorised)")
        keep = frequency_order(keep, counts, list(specials.values()))
    remap = remap_table(keep, V, unk_id=int(np.flatnonzero(keep == specials["unk"])[0]))
    unseen = settings.unseen_tokens
    dropped = np.setdiff1d(np.arange(tokenizer.vocab_size), keep) if vocab_prune and unseen != "split" else []
    aliases = None
    if len(dropped):  # they stay in the tokenizer, after the kept ids, and read a kept row
        aliases = alias_targets(E, keep, dropped, unseen, specials["unk"],
                                list(range(len(RESERVED))) + list(specials.values()))
        remap[dropped] = len(keep) + np.arange(len(dropped))
    E, counts = E[keep], counts[keep]
    new_tok = tokenizer
    if vocab_prune or full_rows:
        new_tok = Tokenizer([tokenizer.vocabulary[i] for i in keep] + [tokenizer.vocabulary[i] for i in dropped],
                            tokenizer.config)
    if vocab_prune:
        note.update(vocab_after=int(len(keep)), vocab_dropped=int(V - len(keep)), min_count=int(min_count),
                    unseen_tokens=unseen)
    if aliases is not None:
        note.update(aliased_tokens=int(len(dropped)),
                    remap_bytes=int(np.dtype(remap_dtype(len(keep))).itemsize * len(aliases)))
    g = Graph(model)
    cfg = dict(g.layer_config(name))
    weights = {name: [E]}
    if full_rows >= len(E):  # a small vocabulary: every kept row stays exact
        note["skipped_factorisation"] = f"full_rows {full_rows} covers all {len(E)} kept rows"
    elif masked and (rank is not None or max_error is not None):
        note["skipped_factorisation"] = (f"layer {name!r} has mask_zero (a padding mask for the layers after "
                                         "it); a factorised embedding has none")
    elif rank is not None or max_error is not None:
        n = full_rows
        w = counts + 1.0 if weighting == "frequency" else np.ones(len(E))
        A, B, err = low_rank(E[n:], w[n:] if weighting == "frequency" else None, rank, max_error)
        r = A.shape[1]
        if n:  # the error of the whole table: the exact rows contribute none
            rest = np.sum(w[n:, None] * E[n:].astype(np.float64) ** 2)
            err = float(err * np.sqrt(rest / max(np.sum(w[:, None] * E.astype(np.float64) ** 2), 1e-30)))
            note["full_rows"] = n
        note.update(rank=int(r), relative_error=err, weighting=weighting)
        params = n * d + r * (len(E) - n + d)
        if params < len(E) * d:
            ent = layer_entry(FactorizedEmbedding, {"input_dim": len(E), "rank": r, "output_dim": d,
                                                    "full_rows": n, "dtype": cfg.get("dtype", "float32")}, name)
            g.replace(name, ent["class_name"], ent["config"], ent["module"], ent["registered_name"])
            weights = {name: [A, B] + ([E[:n]] if n else [])}
            note["params_after"] = int(params)
        else:
            note["skipped_factorisation"] = f"rank {r} does not lower the parameter count"
    if "params_after" not in note:
        cfg["input_dim"] = int(len(E))
        g.entry(name)["config"] = cfg
        note["params_after"] = int(len(E) * d)
    if aliases is not None:
        insert_token_remap(g, name, aliases, weights)
    new = rebuild(model, g, weights, name=model.name)
    return new, new_tok, remap, note


def insert_token_remap(g: Graph, embedding: str, table: np.ndarray, weights: dict) -> None:
    """Put a ``TokenRemap`` holding ``table`` between the token-id input and ``embedding`` only (a
    padding mask or anything else reading the ids keeps the tokenizer's ids); int16 entries when
    every row id fits."""
    name = "token_remap" if not g.has("token_remap") else f"{embedding}_remap"
    dtype = remap_dtype(int(np.max(table, initial=0)) + 1)
    ent = layer_entry(TokenRemap, {"input_vocab_size": int(len(table)), "table_dtype": dtype}, name)
    ent["inbound_nodes"] = [[[g.inputs_of(embedding)[0], 0, 0, {}]]]
    at = next(i for i, e in enumerate(g.entries) if e["name"] == embedding)
    g.entries.insert(at, ent)
    g.set_inputs(embedding, [name])
    weights[name] = [table.astype(dtype)]


def check_tokenizer_remap(old: Tokenizer, new: Tokenizer, remap: np.ndarray, texts: list[str]) -> int:
    """Rows of ``texts`` where ``new.encode`` differs from ``remap[old.encode]`` (0 when consistent)."""
    if not texts:
        return 0
    a = remap[old.encode(texts)]
    b = new.encode(texts)
    return int(np.sum(np.any(a != b, axis=1)))
