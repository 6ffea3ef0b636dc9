"""TF_CONFIG is read and checked before TensorFlow loads; a bad one is one line naming the key."""
import json

import pytest

from rmcompress.config.cluster import parse_tf_config, read_cluster, writes_artifacts
from rmcompress.errors import UsageError

TWO = {"worker": ["127.0.0.1:2001", "127.0.0.1:2002"]}


def tf_config(cluster=TWO, task_type="worker", index=0) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_a_two_worker_cluster_has_worker_0_as_chief():
    first, second = parse_tf_config(tf_config()), parse_tf_config(tf_config(index=1))
    assert (first.workers, first.is_chief, second.is_chief) == (2, True, False)


def test_a_chief_role_writes_and_counts_as_a_worker():
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    assert parse_tf_config(tf_config(cluster, "chief", 0)).is_chief
    worker0 = parse_tf_config(tf_config(cluster, "worker", 0))
    assert (worker0.workers, worker0.is_chief) == (3, False)


@pytest.mark.parametrize("text, key", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "key 'cluster'"),
    (tf_config({"ps": ["h:1"], "worker": ["h:2"]}), "key 'cluster.ps'"),
    (tf_config({"worker": ["no-port"]}), "key 'cluster.worker'"),
    (tf_config({"worker": []}), "key 'cluster.worker'"),
    (tf_config({"chief": ["a:1", "b:1"], "worker": ["c:1"]}, "chief"), "key 'cluster.chief'"),
    (tf_config({"worker": ["a:1", "a:1"]}), "lists a:1 twice"),
    (json.dumps({"cluster": TWO}), "key 'task'"),
    (tf_config(task_type="chief"), "key 'task.type'"),
    (tf_config(index=2), "key 'task.index'"),
    (tf_config(index="0"), "key 'task.index'"),
])
def test_a_bad_tf_config_is_one_line_naming_the_key(text, key):
    with pytest.raises(UsageError, match="TF_CONFIG") as e:
        parse_tf_config(text)
    assert key in str(e.value) and "\n" not in str(e.value)


def test_only_a_non_chief_of_a_multi_worker_cluster_writes_nothing():
    env0, env1 = {"TF_CONFIG": tf_config()}, {"TF_CONFIG": tf_config(index=1)}
    assert read_cluster({}) is None and read_cluster({"TF_CONFIG": "  "}) is None
    assert writes_artifacts("auto", env0) and not writes_artifacts("auto", env1)
    assert not writes_artifacts("multiworker", env1)
    assert writes_artifacts("none", env1) and writes_artifacts("mirrored", env1)  # TF_CONFIG unused
    one = {"TF_CONFIG": tf_config({"worker": ["h:1"]})}
    assert writes_artifacts("auto", one) and writes_artifacts("auto", {})
