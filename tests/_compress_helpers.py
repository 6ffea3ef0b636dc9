"""Setup shared by the compression pass tests (cluster, prune, quantise, QAT)."""
from __future__ import annotations

from conftest import tiny_config


def transformer_state(tmp_path_factory, data_file, max_steps: int = 4):
    """A tiny transformer trained ``max_steps`` steps on ``data_file``, as the
    :class:`~rmcompress.compress.state.CompressState` a pass receives."""
    from rmcompress.compress.state import prepare_state
    from rmcompress.training.trainer import train

    r = train(data_file, tiny_config(arch="transformer", max_steps=max_steps), tmp_path_factory.mktemp("m") / "m",
              verbose=0)
    return prepare_state(r.bundle, data_file)


def run_pass(name: str, state, **settings):
    """Run the registered pass ``name`` on ``state`` with ``settings`` (the rest: defaults);
    return ``(state, notes)``."""
    from rmcompress.compress.passes import PASSES

    cls = PASSES[name]
    result = cls()(state, cls.Settings(**settings))
    return result.state, result.notes
