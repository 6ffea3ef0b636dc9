"""rmcompress: train, shrink, compress and export reward models for edge devices.

The public API is importable from the package root (resolved lazily, so ``import rmcompress``
does not load TensorFlow until something is used)::

    from rmcompress import TrainConfig, train, export_model, evaluate, load_model_dir

Every name in ``__all__`` (but ``__version__``) is the documented callable, whichever
subpackages are imported: the subpackages are named apart from the functions (``evaluation``
holds ``evaluate``, ``compression`` holds ``compress``).
"""
from __future__ import annotations

import importlib

_API = {
    "TrainConfig": "rmcompress.config.training",
    "train": "rmcompress.training.trainer",
    "ArchConfig": "rmcompress.models.archconfig",
    "build_reward_model": "rmcompress.models.architectures",
    "from_keras": "rmcompress.models.convert",
    "import_model": "rmcompress.models.importing",
    "load_model_dir": "rmcompress.models.modeldir",
    "save_model_dir": "rmcompress.models.modeldir",
    "RewardTrainingModel": "rmcompress.training.model",
    "ComplexityAwareModel": "rmcompress.training.complexity_model",
    "ComplexityTerm": "rmcompress.training.complexity_model",
    "BudgetController": "rmcompress.training.complexity_callbacks",
    "BudgetEarlyStopping": "rmcompress.training.complexity_callbacks",
    "ComplexityLogger": "rmcompress.training.complexity_callbacks",
    "Tokenizer": "rmcompress.data.tokenizer",
    "load_data": "rmcompress.data.loaders",
    "split_data": "rmcompress.data.split",
    "export_model": "rmcompress.export.exporter",
    "evaluate": "rmcompress.evaluation.evaluate",
    "compress": "rmcompress.compression.pipeline",
    "Recipe": "rmcompress.compression.recipe",
    "sensitivity": "rmcompress.compression.sensitivity",
    "search": "rmcompress.compression.search",
    "count": "rmcompress.models.structure",
    "shrink": "rmcompress.structured.shrink",
    "gated_copy": "rmcompress.structured.gating",
    "structure_of": "rmcompress.models.structure",
    "budget_compress": "rmcompress.training.budget",
    "RMCompressError": "rmcompress.errors",
}
#: not part of the callable API: the version string
_DATA = {"__version__": "rmcompress._version"}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API or name in _DATA:
        return getattr(importlib.import_module({**_API, **_DATA}[name]), name)
    raise AttributeError(f"module 'rmcompress' has no attribute {name!r}")
