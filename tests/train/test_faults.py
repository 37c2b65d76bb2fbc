"""Training faults on the tiny model with real Ray Train: a SIGKILLed worker, broken checkpoints
before --resume, a locked MLflow store. Each run is a few steps of 2 workers."""

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from framecall.data.shards import list_shards
from framecall.models.checkpoint import TRAINING_STATE, CheckpointError
from framecall.train.checkpoints import COMPLETE, resume_candidates
from framecall.train.runner import fit
from tests_helpers import train_config


def _history(uri, run_id, key):
    from mlflow.tracking import MlflowClient

    return sorted((m.step, m.timestamp) for m in MlflowClient(uri).get_metric_history(run_id, key))


def _complete_steps(output: Path) -> list[int]:
    return [json.loads((d / COMPLETE).read_text())["global_step"] for d in resume_candidates(output / "ray")]


def _train_workers(address: str) -> list[int]:
    from ray.util.state import list_actors

    alive = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    return [a.pid for a in alive]


def _kill_after_checkpoint(output: Path, step: int, killed: dict, address: str) -> None:
    """Watch the checkpoint directory; SIGKILL one train worker once a checkpoint >= ``step`` is complete
    (the worker pids are looked up before, so the kill follows the checkpoint within ~50 ms)."""
    deadline, pids = time.time() + 400, []
    while time.time() < deadline:
        if not pids and (output / "ray").is_dir():
            pids = _train_workers(address)
        if pids and max(_complete_steps(output), default=-1) >= step:
            killed["latest_complete"] = max(_complete_steps(output))
            killed["t"] = time.time()
            os.kill(pids[-1], signal.SIGKILL)
            return
        time.sleep(0.05)


def _train_rows(data) -> int:
    return sum(pq.read_table(p, columns=["split"])["split"].to_pylist().count("train") for p in list_shards(data))


@pytest.mark.slow
def test_killed_worker_restores_latest_complete_checkpoint(ray_session, tiny_words_all, mlflow_uri, tmp_path):
    """SIGKILL a Ray Train worker after the step-4 checkpoint of an 8-step run (ray.max_failures default)."""
    cfg = train_config(tmp_path, tiny_words_all, mlflow_uri, steps=8)
    assert cfg.ray.max_failures >= 1  # fault tolerance is on by default
    killed: dict = {}
    address = ray_session.get_runtime_context().gcs_address
    watcher = threading.Thread(target=_kill_after_checkpoint, args=(Path(cfg.output), 4, killed, address),
                               daemon=True)
    watcher.start()
    res = fit(cfg)
    watcher.join(1)
    assert "t" in killed, "no worker was killed"
    from mlflow.tracking import MlflowClient

    run = MlflowClient(mlflow_uri).get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["framecall.restarts"] == "1"
    restart = run.data.tags["framecall.restart_1"]
    from_step = int(run.data.params["restart_1.from_step"])
    assert restart.startswith("worker group restart") and from_step >= killed["latest_complete"], restart
    # every evaluation step once: none logged twice by the re-run steps, none missing
    assert [s for s, _ in _history(mlflow_uri, res.run_id, "val/topn_nms_acc20ms")] == [2, 4, 6, 8]
    assert [s for s, _ in _history(mlflow_uri, res.run_id, "restarts")] == [from_step]
    # the data order went on where the checkpoint left it: (epoch, batch) of 8 uninterrupted steps
    per_epoch = -(-(_train_rows(tiny_words_all) // 2) // 2)  # rows per worker (equal split) / batch 2
    final = max(resume_candidates(Path(cfg.output) / "ray"), key=lambda d: json.loads((d / COMPLETE).read_text())
                ["global_step"])
    state = torch.load(final / TRAINING_STATE, weights_only=True)
    assert state["step"] == 8 and state["epoch"] * per_epoch + state["epoch_batch"] == 8, state
    # kill -> resumed: the restart marker is logged when the restored workers start training
    resumed_at = _history(mlflow_uri, res.run_id, "restarts")[0][1] / 1000
    print(f"\n[bench] killed worker -> resumed training: {resumed_at - killed['t']:.1f} s "
          f"(restored step {from_step}, latest complete at the kill {killed['latest_complete']})")


@pytest.mark.slow
def test_resume_verifies_and_falls_back_before_any_worker(ray_session, tiny_words_all, mlflow_uri, tmp_path, capfd):
    first = fit(train_config(tmp_path, tiny_words_all, mlflow_uri, steps=4))
    output = Path(first.output)
    by_step = {json.loads((d / COMPLETE).read_text())["global_step"]: d for d in resume_candidates(output / "ray")}
    assert sorted(by_step) == [2, 4]
    weights = by_step[4] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    state = by_step[2] / TRAINING_STATE
    saved_state = state.read_bytes()
    state.unlink()
    runs_before = sorted(p.name for p in (output / "ray").iterdir())
    with pytest.raises(CheckpointError, match="no complete checkpoint") as err:
        fit(train_config(tmp_path, tiny_words_all, mlflow_uri, steps=6, resume="true"))
    assert str(weights) in str(err.value) and str(state) in str(err.value)
    assert sorted(p.name for p in (output / "ray").iterdir()) == runs_before  # no Ray Train run started
    state.write_bytes(saved_state)  # now the step-2 checkpoint is complete again: fall back to it
    capfd.readouterr()
    resumed = fit(train_config(tmp_path, tiny_words_all, mlflow_uri, steps=6, resume="true"))
    out = capfd.readouterr().out
    assert f"not resuming from {by_step[4]}" in out and f"falling back to {by_step[2]} (step 2)" in out
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(mlflow_uri).get_run(resumed.run_id).data.tags
    assert resumed.run_id == first.run_id and str(weights) in tags["framecall.resume_fallback"]
    assert [s for s, _ in _history(mlflow_uri, first.run_id, "val/topn_nms_acc20ms")] == [2, 4, 6]


def _hold_lock(db: Path, start: threading.Event, seconds: float, held: dict) -> None:
    start.wait(240)
    con = sqlite3.connect(db, timeout=60, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    held["from"] = time.time()
    time.sleep(seconds)
    con.execute("ROLLBACK")
    con.close()
    held["to"] = time.time()


@pytest.mark.slow
def test_locked_mlflow_store_neither_kills_nor_restarts_training(ray_session, tiny_words_all, tmp_path):
    """Lock the SQLite store (BEGIN EXCLUSIVE) for 45 s from the first checkpoint on, past its busy
    timeout: MLflow sets ``PRAGMA busy_timeout = 20000`` on every session (mlflow.store.db.utils), which
    overrides a ``?timeout=`` in the URI, so no setting shortens it. Every logging attempt made in the
    lock's first 25 s fails with "database is locked" after 20 s and is retried."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    cfg = train_config(tmp_path, tiny_words_all, uri, steps=8)
    start, held = threading.Event(), {}
    locker = threading.Thread(target=_hold_lock, args=(db, start, 45.0, held), daemon=True)
    locker.start()

    def lock_after_first_checkpoint():
        while not (Path(cfg.output) / "ray").is_dir() or not _complete_steps(Path(cfg.output)):
            time.sleep(0.05)
        start.set()

    threading.Thread(target=lock_after_first_checkpoint, daemon=True).start()
    res = fit(cfg)
    locker.join(90)
    assert held.get("to"), "the store was never locked"
    from mlflow.tracking import MlflowClient

    run = MlflowClient(uri).get_run(res.run_id)
    assert run.info.status == "FINISHED" and "framecall.restarts" not in run.data.tags  # no worker restart
    retried, lost = run.data.metrics["mlflow/retries"], run.data.metrics["mlflow/lost_metrics"]
    assert retried > 0  # the lock was met ...
    val_steps = [s for s, _ in _history(uri, res.run_id, "val/topn_nms_acc20ms")]
    assert val_steps == [2, 4, 6, 8] or lost > 0  # ... and every metric was retried in, or counted lost
