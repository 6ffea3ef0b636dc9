"""The ``tf.distribute`` strategy a training run uses (``train --strategy``), and who writes.

:func:`make_strategy` turns a choice of :data:`rmcompress.config.choices.STRATEGIES` into a
strategy (a ``tf.distribute.Strategy`` given is used as is):

- ``none``: the default strategy: one device, a GPU when TensorFlow sees one;
- ``mirrored``: ``MirroredStrategy`` over the local GPUs (the CPU without one);
- ``multiworker``: ``MultiWorkerMirroredStrategy`` over the cluster of ``TF_CONFIG``
  (:mod:`rmcompress.config.cluster`), each worker mirroring its local devices;
- ``auto`` (default): ``multiworker`` when ``TF_CONFIG`` names more than one worker,
  ``mirrored`` when TensorFlow sees more than one GPU, else ``none``.

``MultiWorkerMirroredStrategy`` must be created before TensorFlow runs its first operation in
the process (collective ops are configured at start-up): ``rmcompress train`` creates it before
reading data; from Python, pass ``strategy="multiworker"`` to the first ``train`` of a process.

Under any strategy the global batch is ``--batch-size`` (every step sees the same examples
whatever the number of workers): each replica gets ``batch_size / replicas``
(:func:`replica_batch`, which refuses a batch that does not divide), the loss is averaged over the
global batch and the complexity term added once per step (:mod:`rmcompress.training.model`), and
the in-memory datasets are sharded by element (:func:`shard_by_data`, ``AutoShardPolicy.DATA``):
every worker builds the same shuffled stream from the same seed and keeps its share of each
batch. The *chief* (:func:`is_chief`) alone writes artifacts; other workers compute the same
thing and write nothing.
"""
from __future__ import annotations

from rmcompress._keras import tf
from rmcompress.config.choices import STRATEGIES
from rmcompress.config.cluster import read_cluster
from rmcompress.errors import UsageError

__all__ = ["make_strategy", "is_chief", "replica_batch", "shard_by_data", "worker_count"]


def _gpus() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def resolve_choice(choice: str, environ=None) -> str:
    """``choice`` with ``auto`` decided (module docstring); ``TF_CONFIG`` is checked when read."""
    if choice not in STRATEGIES:
        raise UsageError(f"--strategy {choice!r} unknown; allowed: {', '.join(STRATEGIES)}")
    cluster = read_cluster(environ) if choice in ("auto", "multiworker") else None
    if choice == "multiworker" and cluster is None:
        raise UsageError("--strategy multiworker reads the cluster from TF_CONFIG, which is not set "
                         "(docs/training.md: one TF_CONFIG per worker)")
    if choice != "auto":
        return choice
    if cluster is not None and cluster.workers > 1:
        return "multiworker"
    return "mirrored" if _gpus() > 1 else "none"


def make_strategy(choice="auto", environ=None) -> tf.distribute.Strategy | None:
    """The strategy of ``choice`` (a name of :data:`STRATEGIES` or a strategy, returned as is;
    None means ``none``): None for the default strategy."""
    if choice is None or isinstance(choice, tf.distribute.Strategy):
        return choice
    name = resolve_choice(choice, environ)
    if name == "none":
        return None
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"--strategy multiworker: cannot start the multi-worker strategy ({str(e).splitlines()[0]}); "
                         "create it before TensorFlow runs anything in this process") from None


def _resolver(strategy):
    return getattr(strategy, "cluster_resolver", None) if strategy is not None else None


def is_chief(strategy) -> bool:
    """Whether this process writes the run's artifacts: always, but for a non-chief worker of a
    multi-worker strategy (:class:`rmcompress.config.cluster.Cluster`)."""
    r = _resolver(strategy)
    if r is None or not r.task_type:
        return True
    if r.task_type == "chief":
        return True
    return r.task_type == "worker" and int(r.task_id or 0) == 0 and not r.cluster_spec().as_dict().get("chief")


def worker_count(strategy) -> int:
    """Training processes of ``strategy`` (1 but for a multi-worker one)."""
    r = _resolver(strategy)
    if r is None or not r.task_type:
        return 1
    spec = r.cluster_spec().as_dict()
    return max(1, len(spec.get("chief", [])) + len(spec.get("worker", [])))


def replica_batch(batch_size: int, strategy) -> int:
    """Examples per replica and step for the global ``batch_size``; a :class:`UsageError` unless
    the replicas divide it."""
    replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    if batch_size % replicas:
        workers = worker_count(strategy)
        where = f"{workers} workers" if workers > 1 else "this machine's devices"
        raise UsageError(f"--batch-size {batch_size} is the global batch and must divide evenly over the "
                         f"{replicas} replicas of {where}; e.g. --batch-size {max(replicas, batch_size // replicas * replicas)}")
    return batch_size // replicas


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` sharded by element (``AutoShardPolicy.DATA``) when a strategy distributes it: the
    in-memory datasets have no files to share out, so every worker keeps its share of each batch."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
