"""Multi-node tests: a head and worker nodes of `ray.cluster_utils.Cluster` on this one machine.

Run as their own pytest invocation (`make test` does: `pytest tests_multinode`), never in the process
of the single local Ray that `tests/` uses: a second local cluster beside a running one confuses Ray
Train's placement-group cleanup.

Layout: the head holds 1 logical CPU (Train's controller, Ray Data's tasks); each worker node holds 2,
and a Train worker asks for 2, so every Train worker has a node of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(ROOT / "tests"))  # tests_helpers

WORKER_CPUS = 2


@pytest.fixture
def cluster():
    """Head + two worker nodes, connected; torn down after the test (each test gets a fresh cluster)."""
    import ray
    from ray.cluster_utils import Cluster

    from tests_helpers import free_port

    # a free dashboard port: 8265 may be held by another Ray on this machine (a user's, a running job)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                      "dashboard_port": free_port()})
    workers = [c.add_node(num_cpus=WORKER_CPUS) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "platform")}},
             log_to_driver=False, configure_logging=False)
    c.workers = workers
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture
def words_dir(tmp_path_factory):
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("words_all")
    with ShardWriter(out, rows_per_shard=16) as w:
        w.write_all(generate(SynthConfig(task="words_all", num=40, seed=3, max_seconds=4.0)))
    return out
