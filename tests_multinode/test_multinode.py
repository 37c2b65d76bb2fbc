"""Training and batch prediction spread over the nodes of a local multi-node cluster, and a worker node
lost mid-run. Same code as on one node: only the cluster differs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from framecall.train.checkpoints import COMPLETE, resume_candidates
from framecall.train.runner import fit
from tests_helpers import train_config

WORKER_CPUS = 2  # as in conftest.py: a Train worker or prediction actor fills a worker node


def _actor_nodes(class_fragment: str) -> set[str]:
    from ray.util.state import list_actors

    return {a.node_id for a in list_actors(limit=10_000) if class_fragment in a.class_name}


def _config(tmp_path, data, steps=6):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return train_config(tmp_path, data, uri, steps=steps, **{"ray.cpus_per_worker": WORKER_CPUS}), uri


def test_training_and_prediction_spread_over_two_nodes(cluster, words_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    from framecall.batch_predict import PredictConfig, predict_to_dir
    from framecall.models.checkpoint import read_manifest

    cfg, uri = _config(tmp_path, words_dir)
    res = fit(cfg)
    worker_nodes = {n.node_id for n in cluster.workers}
    assert _actor_nodes("RayTrainWorker") == worker_nodes  # one Train worker on each worker node
    run = MlflowClient(uri).get_run(res.run_id)
    assert run.info.status == "FINISHED" and "framecall.restarts" not in run.data.tags
    steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(res.run_id, "val/topn_nms_acc20ms"))
    assert steps == [2, 4, 6]
    # the checkpoint format of a single-node run: complete marker, manifest, weights
    complete = [json.loads((d / COMPLETE).read_text())["global_step"] for d in resume_candidates(Path(res.output) / "ray")]
    assert max(complete) == 6
    assert read_manifest(res.best_checkpoint).head == "poisson"

    summary = predict_to_dir(str(words_dir), PredictConfig(checkpoint=str(res.best_checkpoint),
                                                            output=str(tmp_path / "pred"), actors=2,
                                                            cpus_per_actor=WORKER_CPUS, batch_size=4))
    assert summary["rows"] == 40 and summary["written"] == 40, summary
    assert _actor_nodes("MapWorker") == worker_nodes  # the two prediction actors, one per worker node


def _remove_a_train_node_after_checkpoint(cluster, output: Path, removed: dict) -> None:
    from ray.util.state import list_actors

    deadline = time.time() + 600
    while time.time() < deadline:
        done = resume_candidates(output / "ray") if (output / "ray").is_dir() else []
        if done:
            alive = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
            victim = next(n for n in cluster.workers if n.node_id in {a.node_id for a in alive})
            removed["step"] = max(json.loads((d / COMPLETE).read_text())["global_step"] for d in done)
            removed["node"] = victim.node_id
            cluster.remove_node(victim, allow_graceful=False)
            return
        time.sleep(0.1)


def test_worker_node_removed_mid_run_restores_and_completes(cluster, words_dir, tmp_path):
    """A spare node stands in for the one removed (what an autoscaler would provide)."""
    from mlflow.tracking import MlflowClient

    cluster.workers.append(cluster.add_node(num_cpus=WORKER_CPUS))
    cluster.wait_for_nodes()
    cfg, uri = _config(tmp_path, words_dir, steps=8)
    removed: dict = {}
    killer = threading.Thread(target=_remove_a_train_node_after_checkpoint,
                              args=(cluster, Path(cfg.output), removed), daemon=True)
    killer.start()
    res = fit(cfg)
    killer.join(5)
    assert removed.get("node"), "no node was removed"
    run = MlflowClient(uri).get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.data.tags.get("framecall.restarts") == "1", run.data.tags
    assert int(run.data.params["restart_1.from_step"]) >= removed["step"]
    steps = sorted(m.step for m in MlflowClient(uri).get_metric_history(res.run_id, "val/topn_nms_acc20ms"))
    assert steps == [2, 4, 6, 8]
    final = max(json.loads((d / COMPLETE).read_text())["global_step"]
                for d in resume_candidates(Path(res.output) / "ray"))
    assert final == 8

