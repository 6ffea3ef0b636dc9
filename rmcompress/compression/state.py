"""What flows through a recipe: the current model, its tokenizer, the data split, the export plan.

Each pass takes a :class:`CompressState` and returns one (passes that change the vocabulary
re-encode the data; passes that only change weights keep it). What a later step needs to know
about an earlier pass is a typed field: ``export`` (:class:`ExportPlan`: precision, length buckets),
``structure`` (:class:`WeightStructure`: which weights were pruned or clustered), ``qat_model``,
``augmented_raw``. ``notes`` collects one dict per pass for ``report.json`` and nothing reads it.

Data: the file given to ``compress`` is split deterministically like training did (the model's
``train_config``: ``val_fraction``, ``seed``, ``split_mode``; a recipe's ``data`` section overrides
them), so the validation rows are ones the model was not trained on when the file is its training
file; or (``--val-data``) a validation file is given and all of the data trains. Fine-tuning and int8
calibration use the training part; parity, evaluation and every choice a pass makes the validation part.
The passes' training seed is the split seed unless ``--seed`` sets its own.

Model: a user's ``Sequential`` (or nested) model enters as its flat functional form, checked on the
validation ids (:mod:`rmcompress.compression.functional`; the first note says so), since every pass
rewrites functional configs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rmcompress._keras import keras
from rmcompress.compression.exportplan import ExportPlan
from rmcompress.config.choices import COLUMN_SETTINGS
from rmcompress.compression.functional import flat_functional
from rmcompress.config.progress import Progress
from rmcompress.data.loaders import PairwiseData, PointwiseData, load_for_model
from rmcompress.data.pipeline import EncodedData, all_ids, encode
from rmcompress.data.split import split_data
from rmcompress.data.tokenizer import Tokenizer
from rmcompress.errors import DataError
from rmcompress.models.modeldir import RewardModelBundle
from rmcompress.training.distill import load_unlabeled
from rmcompress.training.lengths import find_slack


@dataclass(frozen=True)
class WeightStructure:
    """Weights an earlier pass gave a structure that later training must keep: the layers ``prune``
    zeroed, the layers ``cluster`` shared values in, and whether clustering kept the zeros."""

    pruned: tuple[str, ...] = ()
    clustered: tuple[str, ...] = ()
    clusters_keep_zeros: bool = False

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer with a structure (pruned or clustered), in order, once."""
        return tuple(dict.fromkeys(self.pruned + self.clustered))

    def preserve(self) -> Literal["none", "prune", "cluster", "prune_cluster"]:
        """What quantisation-aware training must keep (:func:`rmcompress.compression.qat.quantize_model`)."""
        if self.clustered:
            return "prune_cluster" if (self.pruned or self.clusters_keep_zeros) else "cluster"
        return "prune" if self.pruned else "none"


@dataclass
class CompressState:
    model: keras.Model
    tokenizer: Tokenizer
    metadata: dict
    task: str
    loss: str
    train_raw: PointwiseData | PairwiseData
    val_raw: PointwiseData | PairwiseData
    train: EncodedData
    val: EncodedData
    seed: int = 0
    #: what training shows and where it logs; the pipeline gives each pass its own TensorBoard run
    progress: Progress = field(default_factory=Progress)
    export: ExportPlan = field(default_factory=ExportPlan)            # set by quantise and length
    structure: WeightStructure = field(default_factory=WeightStructure)  # set by prune and cluster
    notes: list = field(default_factory=list)     # one dict per pass, for the report only
    qat_model: keras.Model | None = None          # set by quantise(mode=qat): the fake-quant model
    unlabeled_raw: PointwiseData | PairwiseData | None = None  # extra texts for passes that distill
    unlabeled: EncodedData | None = None
    #: the budget pass's word-replacement variants (``augment``): later passes that distill reuse them
    augmented_raw: PointwiseData | None = None
    #: recipe ``data.group_by_length``: the padding the model needs after a text's last token
    #: (:func:`rmcompress.training.lengths.find_slack`); None: training batches keep the full length
    length_slack: int | None = None

    def reencode(self, tokenizer: Tokenizer | None = None) -> None:
        """Encode the raw splits again (after a vocabulary change)."""
        if tokenizer is not None:
            self.tokenizer = tokenizer
        self.train = encode(self.train_raw, self.tokenizer)
        self.val = encode(self.val_raw, self.tokenizer)
        if self.unlabeled_raw is not None:
            self.unlabeled = encode(self.unlabeled_raw, self.tokenizer)

    def val_ids(self, limit: int | None = None) -> np.ndarray:
        ids = all_ids(self.val)
        return ids if limit is None else ids[:limit]

    def train_ids(self) -> np.ndarray:
        return all_ids(self.train)

    def calibration_ids(self, n: int) -> np.ndarray:
        """``n`` training rows (seeded): the representative dataset for int8 calibration."""
        ids = self.train_ids()
        if len(ids) > n:
            ids = ids[np.sort(np.random.RandomState(self.seed).choice(len(ids), n, replace=False))]
        return ids


def split_settings(metadata: dict, overrides: dict) -> dict:
    """The split of the model's training run, with a recipe's ``data`` overrides applied."""
    tc = metadata.get("train_config") or {}
    out = {"val_fraction": tc.get("val_fraction", 0.1), "seed": tc.get("seed", 0),
           "split": tc.get("split_mode", "random"), "max_train_examples": None}
    out.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return out


def prepare_state(bundle: RewardModelBundle, data, data_settings: dict | None = None,
                  progress: Progress | None = None, unlabeled=None, val_data=None,
                  seed: int | None = None) -> CompressState:
    """Load ``data`` for the bundle's task, split it, encode it with the bundle's tokenizer.
    ``val_data``: the validation rows instead of a split of ``data`` (all of ``data`` trains;
    ``data_settings``' cap on training rows still applies). ``seed``: the state's training seed
    (default: the split seed).
    ``unlabeled``: a file of extra texts (pairwise: pairs whose order carries no preference) that
    passes which distill from the source model train on with the distillation term only. ``progress``:
    what the passes' training shows and logs (default: nothing)."""
    task = bundle.task
    data = load_for_model(data, bundle.metadata, training_columns=True)
    s = split_settings(bundle.metadata, data_settings or {})
    if val_data is not None:
        train_raw, val_raw = data, load_for_model(val_data, bundle.metadata, training_columns=True)
        where = f"{val_raw.source}: no validation rows"
    else:
        train_raw, val_raw = split_data(data, s["val_fraction"], s["seed"], s["split"])
        where = f"{data.source}: no validation rows (val_fraction={s['val_fraction']})"
    if len(val_raw) == 0:
        raise DataError(f"{where}; compress needs validation data for parity and evaluation")
    cap = s.get("max_train_examples")
    if cap and len(train_raw) > cap:
        idx = np.sort(np.random.RandomState(s["seed"]).choice(len(train_raw), cap, replace=False))
        train_raw = train_raw.subset(idx)
    loss = bundle.metadata.get("loss") or ("pairwise" if task == "pairwise" else "bce")
    extra = None
    if unlabeled is not None:
        tc = bundle.metadata.get("train_config") or {}
        extra = load_unlabeled(unlabeled, task, {k: tc.get(k) for k in COLUMN_SETTINGS})
    train, val = encode(train_raw, bundle.tokenizer), encode(val_raw, bundle.tokenizer)
    model, flattened = flat_functional(bundle.model, all_ids(val)[:256])
    return CompressState(model, bundle.tokenizer, dict(bundle.metadata), task, loss, train_raw,
                         val_raw, train, val, seed=int(s["seed"] if seed is None else seed),
                         progress=progress or Progress(),
                         unlabeled_raw=extra,
                         unlabeled=None if extra is None else encode(extra, bundle.tokenizer),
                         notes=[flattened] if flattened else [],
                         length_slack=(find_slack(model, train, "data.group_by_length")
                                       if s.get("group_by_length") else None))
