"""Training throughput on one node vs spread over two nodes of a local `ray.cluster_utils.Cluster`.

    python benchmarks/bench_multinode.py [--steps 60] [--items 200]

The same run (2 Ray Train workers x 2 logical CPUs, tiny Omni, Poisson head) twice: (a) one worker node
of 4 CPUs holds both workers; (b) two worker nodes of 2 CPUs hold one each. Every node is on this
machine, so this measures the cost of spreading (gradient all-reduce over TCP between raylets, object
transfers between the nodes' object stores), not scaling: one 2-core machine cannot show scaling.
Steps/s is taken between the first and the last logged training step (model build and data start-up
excluded).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))

from framecall.data.shards import ShardWriter  # noqa: E402
from framecall.data.synthetic import SynthConfig, generate  # noqa: E402


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(layout: list[int], data: Path, out: Path, steps: int) -> dict:
    """``layout``: logical CPUs of each worker node. -> steps/s of the training loop and wall time."""
    import ray
    from mlflow.tracking import MlflowClient
    from ray.cluster_utils import Cluster

    from framecall.config import build_config
    from framecall.train.config import TrainJobConfig
    from framecall.train.runner import fit

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                            "dashboard_port": _free_port()})
    for cpus in layout:
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "platform")}},
             log_to_driver=False, configure_logging=False)
    try:
        uri = f"sqlite:///{out / 'mlflow.db'}"
        cfg = build_config(TrainJobConfig, flags={"data.data_dir": str(data), "output": str(out / "out")},
                           overrides=[f"train.max_steps={steps}", f"train.eval_every={steps}", "train.batch_size=4",
                                      "train.warmup_steps=1", "ray.num_workers=2", "ray.cpus_per_worker=2",
                                      f"mlflow.tracking_uri={uri}", "data.make_if_missing=false",
                                      "mlflow.register=false"])
        t0 = time.time()
        res = fit(cfg)
        wall = time.time() - t0
        # train/seconds: the loop's own clock at each logged step (rank 0)
        hist = sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(res.run_id, "train/seconds"))
        (s0, t_0), (s1, t_1) = hist[0], hist[-1]
        return {"layout": layout, "steps_per_s": (s1 - s0) / max(t_1 - t_0, 1e-9), "wall_s": wall}
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--items", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        with ShardWriter(data, rows_per_shard=50) as w:
            w.write_all(generate(SynthConfig(task="words_all", num=args.items, seed=5, max_seconds=4.0)))
        rows = [run_once(layout, data, Path(tmp) / f"run{i}", args.steps) for i, layout in enumerate(([4], [2, 2]))]
    one, two = rows
    print(json.dumps(rows, indent=2))
    print(f"| nodes | steps/s | run wall (s) |\n|---|---|---|\n| 1 (4 CPUs) | {one['steps_per_s']:.2f} | "
          f"{one['wall_s']:.0f} |\n| 2 (2 CPUs each) | {two['steps_per_s']:.2f} | {two['wall_s']:.0f} |\n"
          f"overhead of spreading: {100 * (1 - two['steps_per_s'] / one['steps_per_s']):.1f}% fewer steps/s")


if __name__ == "__main__":
    main()
