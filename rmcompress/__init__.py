"""rmcompress: train, shrink, compress and export reward models for edge devices.

The public API is importable from the package root (resolved lazily, so ``import rmcompress``
does not load TensorFlow until something is used)::

    from rmcompress import TrainConfig, train, export_model, evaluate, load_model_dir
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "TrainConfig": "rmcompress.config.training",
    "train": "rmcompress.training.trainer",
    "ArchConfig": "rmcompress.models.architectures",
    "build_reward_model": "rmcompress.models.architectures",
    "load_model_dir": "rmcompress.models.modeldir",
    "save_model_dir": "rmcompress.models.modeldir",
    "RewardTrainingModel": "rmcompress.training.model",
    "Tokenizer": "rmcompress.data.tokenizer",
    "load_data": "rmcompress.data.loaders",
    "split_data": "rmcompress.data.split",
    "export_model": "rmcompress.export.exporter",
    "evaluate": "rmcompress.evaluate.evaluate",
    "count": "rmcompress.complexity.registry",
    "RMCompressError": "rmcompress.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'rmcompress' has no attribute {name!r}")
