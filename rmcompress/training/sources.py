"""Where a training run's scorer and tokenizer come from when they are not trained from scratch.

- ``--backbone PRESET_OR_DIR``: a keras-nlp backbone bridged into the ``bert`` architecture
  (:mod:`rmcompress.models.backbones`), with the backbone's own vocabulary; fresh reward head.
- ``--init MODEL_DIR``: a copy of an existing model directory (graph, weights and tokenizer), e.g.
  the fine-tuned teacher as the starting point of a compressed, distilled student.

Each source offers ``tokenizer``, ``arch`` (the architecture dict stored in the metadata), ``info``
and ``build()`` (call inside the distribution strategy's scope).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rmcompress._keras import keras
from rmcompress.data.tokenizer import Tokenizer
from rmcompress.errors import UsageError
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.backbones import load_pretrained
from rmcompress.models.modeldir import load_model_dir


@dataclass
class ModelDirSource:
    """A model directory to start from (see module docstring)."""

    tokenizer: Tokenizer
    arch: ArchConfig | dict
    model: keras.Model
    info: dict = field(default_factory=dict)

    def build(self, name: str | None = None) -> keras.Model:
        clone = keras.models.clone_model(self.model)
        clone.set_weights(self.model.get_weights())
        return clone


def scorer_source(cfg, task: str):
    """The source named by ``cfg.source`` (``backbone`` / ``init``; None: train from scratch)."""
    src = cfg.source
    if src.backbone and src.init:
        raise UsageError("--backbone and --init are exclusive (--init already holds a backbone's weights)")
    if src.backbone:
        return load_pretrained(src.backbone, cfg.resolved_seq_len(), cfg.resolved_truncate(), cfg.arch.dropout,
                               match=src.backbone_match)
    if src.init:
        bundle = load_model_dir(src.init, expect_task=task)
        arch = bundle.metadata.get("arch") or {}
        try:
            arch = ArchConfig.from_dict(arch)
        except Exception:  # a graph the builder cannot describe (e.g. gated): keep the dict
            pass
        info = {"init": str(src.init), **({"backbone": bundle.metadata["backbone"]}
                                          if "backbone" in bundle.metadata else {})}
        return ModelDirSource(bundle.tokenizer, arch, bundle.model, info)
    return None
