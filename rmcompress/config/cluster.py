"""The cluster a multi-worker training run belongs to, read from the standard ``TF_CONFIG``
environment variable (checked here, before TensorFlow loads, so a bad value is one line).

``TF_CONFIG`` is the JSON object ``tf.distribute.MultiWorkerMirroredStrategy`` reads, one per
process, the same ``cluster`` everywhere and a different ``task``::

    {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}

Roles: ``worker`` (a list of ``host:port``) and optionally one ``chief``. The *chief* writes the
run's artifacts: the ``chief`` task when the cluster has one, else worker 0. The number of
workers is ``len(chief) + len(worker)``; every worker trains one replica per local device.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from rmcompress.errors import UsageError

ENV = "TF_CONFIG"
#: the roles a multi-worker training cluster may name
ROLES = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """One process's view of ``TF_CONFIG``: the addresses by role and this task."""

    roles: dict
    task_type: str
    task_index: int

    @property
    def workers(self) -> int:
        """Training processes in the cluster (chief included)."""
        return sum(len(self.roles.get(r, [])) for r in ROLES)

    @property
    def is_chief(self) -> bool:
        """Whether this task writes the run's artifacts (module docstring)."""
        if self.roles.get("chief"):
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0


def _bad(key: str, why: str) -> UsageError:
    return UsageError(f"{ENV}: key {key!r} {why}")


def parse_tf_config(text: str) -> Cluster:
    """The :class:`Cluster` of a ``TF_CONFIG`` value; a :class:`UsageError` naming the bad key."""
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{ENV}: not valid JSON ({e.msg} at character {e.pos}); expected "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}') from None
    if not isinstance(spec, dict):
        raise UsageError(f"{ENV}: expected a JSON object with keys 'cluster' and 'task', got {type(spec).__name__}")
    cluster = spec.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise _bad("cluster", "must be an object of roles, e.g. {\"worker\": [\"host1:port\", \"host2:port\"]}")
    roles = {}
    for role, addresses in cluster.items():
        if role not in ROLES:
            raise _bad(f"cluster.{role}", f"is not a role of multi-worker training; allowed: {', '.join(ROLES)}")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses)):
            raise _bad(f"cluster.{role}", f"must be a non-empty list of \"host:port\" addresses, got {addresses!r}")
        roles[role] = list(addresses)
    if len(roles.get("chief", [])) > 1:
        raise _bad("cluster.chief", f"names {len(roles['chief'])} addresses; a cluster has at most one chief")
    everyone = [a for r in ROLES for a in roles.get(r, [])]
    twice = sorted({a for a in everyone if everyone.count(a) > 1})
    if twice:
        raise _bad("cluster", f"lists {twice[0]} twice; every task needs its own host:port")
    task = spec.get("task")
    if not isinstance(task, dict):
        raise _bad("task", "must be an object like {\"type\": \"worker\", \"index\": 0} (this process's role)")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in roles:
        raise _bad("task.type", f"{task_type!r} is not a role of 'cluster' ({', '.join(roles)})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(roles[task_type]):
        raise _bad("task.index", f"{index!r} must be an integer in [0, {len(roles[task_type])}) "
                                 f"(the {task_type} addresses of 'cluster')")
    return Cluster(roles, task_type, index)


def read_cluster(environ=None) -> Cluster | None:
    """The :class:`Cluster` of ``$TF_CONFIG`` (None when unset or empty)."""
    text = (os.environ if environ is None else environ).get(ENV, "")
    return parse_tf_config(text) if text.strip() else None


def writes_artifacts(strategy: str = "auto", environ=None) -> bool:
    """Whether a training process run with the ``--strategy`` choice ``strategy`` writes the run's
    artifacts: only the chief of a multi-worker cluster does (``auto`` is multi-worker when
    ``TF_CONFIG`` names more than one worker); any other process does. A bad ``TF_CONFIG`` read
    here raises its one-line error."""
    if strategy not in ("auto", "multiworker"):
        return True
    cluster = read_cluster(environ)
    if cluster is None or (strategy == "auto" and cluster.workers < 2):
        return True
    return cluster.is_chief
