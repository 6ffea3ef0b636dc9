"""Shared recipe prefixes: the state a recipe's first passes leave, kept for the next run that starts with them.

Two ``compress`` runs of one model on one data file whose recipes begin with the same passes (the
same names and settings, the same recipe ``data`` section and training seed) compute the same state
up to the pass where they part: :func:`rmcompress.compression.pipeline.run_passes` seeds every
random draw from ``state.seed`` as each pass starts, so a pass is a function of the state it gets. A search (:mod:`rmcompress.compression.search`) runs many recipes that share a
``budget`` pass (its costliest step) and differ after it; with a cache that pass runs once per
rung, and every other run starts from its state.

Contract:

- :meth:`PrefixCache.plan` takes the recipes about to run. A prefix (the first ``k`` passes) is
  kept only at a *branching point*: at least two planned recipes start with it and they do not all
  continue with the same pass (one that ends there counts as parting). So the cache holds at most one state per branching point.
- :meth:`PrefixCache.store` is called after each pass; it keeps a copy of the state when that
  prefix is a branching point and no copy is held yet.
- :meth:`PrefixCache.restore` returns the longest kept prefix of a recipe and a copy of its state:
  the model is cloned with its weights, and the clone must score the validation rows exactly as
  the kept model does, or nothing is restored. A state after ``quantise: {mode: qat}`` is not kept. A kept model is never handed out, so a run cannot
  change what the next run restores.
- :meth:`PrefixCache.release` is called when a run ends, finished or failed; a prefix that no
  planned run still needs is dropped.
- A cache belongs to one model and one data file. The ``context`` (the model's directory, or a
  digest of its weights when it has none; a digest of the encoded training and validation rows;
  the recipe's ``data`` section, the seed, the unlabeled and validation files) is part of every
  key, so another run simply finds nothing.

The restored passes' notes in ``report.json`` carry ``"reused": true``; their ``seconds`` are the time
the run that built them took.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter, defaultdict

import numpy as np

from rmcompress._keras import keras
from rmcompress.compression.recipe import PassSpec
from rmcompress.compression.state import CompressState

#: validation rows the cloned model must score exactly as the kept one
CHECK_ROWS = 64
_END = "<end>"


def _spec_key(spec: PassSpec) -> str:
    return json.dumps([spec.name, spec.params], sort_keys=True, default=str)


def _prefix_key(specs) -> str:
    return json.dumps([_spec_key(s) for s in specs])


def _copy_model(model: keras.Model, ids: np.ndarray) -> keras.Model | None:
    """A clone of ``model`` with its weights, or None when the clone does not score ``ids`` exactly
    as ``model`` does (or the model cannot be cloned)."""
    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 (a model clone_model cannot rebuild is simply not kept)
        return None
    if len(ids):
        a = model.predict(ids, batch_size=256, verbose=0)
        b = clone.predict(ids, batch_size=256, verbose=0)
        if not np.array_equal(np.asarray(a), np.asarray(b)):
            return None
    return clone


def _copy_state(state: CompressState, reused: int = 0) -> CompressState | None:
    """A copy of ``state`` with its own model, metadata and notes (the other fields are replaced,
    never changed, by the passes), its last ``reused`` pass notes marked ``"reused": true``; None
    for a state that holds a fake-quant model (its quantizers are not rebuilt exactly by a clone)
    or whose model does not clone exactly."""
    if state.qat_model is not None:
        return None
    model = _copy_model(state.model, state.val_ids(CHECK_ROWS))
    if model is None:
        return None
    notes = copy.deepcopy(state.notes)
    for note in notes[len(notes) - reused:] if reused else ():  # run_passes adds one note per pass
        note["reused"] = True
    return dataclasses.replace(state, model=model, metadata=copy.deepcopy(state.metadata), notes=notes)


class PrefixCache:
    """States after shared recipe prefixes (module docstring)."""

    def __init__(self):
        self._users: Counter = Counter()        # prefix -> planned runs that start with it
        self._next: dict = defaultdict(Counter)  # prefix -> {next pass: planned runs that continue with it}
        self._kept: dict = {}                   # (context, prefix) -> state

    def plan(self, recipes) -> None:
        """Add the runs about to start (:class:`Recipe` objects or lists of :class:`PassSpec`)."""
        for r in recipes:
            specs = list(getattr(r, "passes", r))
            for k in range(1, len(specs) + 1):
                p = _prefix_key(specs[:k])
                self._users[p] += 1
                self._next[p][_spec_key(specs[k]) if k < len(specs) else _END] += 1

    def branching(self, specs) -> bool:
        """Whether the prefix ``specs`` is kept when a run reaches it (module docstring)."""
        p = _prefix_key(specs)
        nxt = +self._next[p]  # the continuations some planned run still takes
        return self._users[p] >= 2 and (len(nxt) >= 2 or _END in nxt)

    def store(self, context: str, specs, state: CompressState) -> bool:
        """Keep a copy of ``state``, the state after the passes ``specs``, at a branching point;
        whether it is kept now."""
        key = (context, _prefix_key(specs))
        if key in self._kept or not self.branching(specs):
            return False
        kept = _copy_state(state)
        if kept is None:
            return False
        self._kept[key] = kept
        return True

    def restore(self, context: str, specs) -> tuple[int, CompressState | None]:
        """``(k, state)``: the longest kept prefix of ``specs`` (``k`` passes) and a copy of its
        state; ``(0, None)`` when none is kept."""
        for k in range(len(specs), 0, -1):
            kept = self._kept.get((context, _prefix_key(specs[:k])))
            if kept is None:
                continue
            state = _copy_state(kept, reused=k)
            return (0, None) if state is None else (k, state)
        return 0, None

    def release(self, specs) -> None:
        """A planned run of ``specs`` has ended: drop the prefixes no planned run needs any more."""
        specs = list(getattr(specs, "passes", specs))
        for k in range(1, len(specs) + 1):
            p = _prefix_key(specs[:k])
            nxt = _spec_key(specs[k]) if k < len(specs) else _END
            if self._next[p][nxt] > 0:
                self._next[p][nxt] -= 1
            if self._users[p] > 0:
                self._users[p] -= 1
            if self._users[p] == 0:
                self._users.pop(p, None)
                self._next.pop(p, None)
                for key in [key for key in self._kept if key[1] == p]:
                    del self._kept[key]

    def clear(self) -> None:
        """Forget every plan and state."""
        self._users.clear()
        self._next.clear()
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)


__all__ = ["PrefixCache", "CHECK_ROWS"]
