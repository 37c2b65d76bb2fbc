"""End-to-end training jobs on the tiny model: 2 Ray Train workers, a few steps."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from framecall.config import ConfigError
from framecall.data.shards import ShardDirectoryError
from framecall.models.backbone import BackboneError
from framecall.models.checkpoint import CheckpointError, read_manifest
from framecall.train.runner import fit, latest_checkpoint
from tests_helpers import tiny_manifest, train_config

ROOT = Path(__file__).resolve().parents[2]


def _run(mlflow_uri, run_id):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    return client, client.get_run(run_id)


@pytest.mark.slow
def test_train_poisson_then_resume(ray_session, tiny_words_all, mlflow_uri, tmp_path):
    res = fit(train_config(tmp_path, tiny_words_all, mlflow_uri))
    manifest = read_manifest(res.best_checkpoint)
    assert manifest.head == "poisson" and manifest.loss == "poisson" and manifest.global_step in (2, 4)
    assert manifest.mlflow_run_id == res.run_id and manifest.frame_s == 0.04 and manifest.subframes == 4
    assert (res.best_checkpoint / "model.safetensors").is_file()
    client, run = _run(mlflow_uri, res.run_id)
    keys = set(run.data.metrics)
    for k in ("train/loss", "train/lr", "val/topn_nms_acc20ms", "val/posterior_mode_acc20ms",
              "val/topn_nms_mad_s", "test/topn_nms_acc20ms", "test/posterior_median_acc100ms", "time/data",
              "time/forward_backward", "time/optimizer", "time/eval", "time/checkpoint", "time/data_fraction"):
        assert k in keys, k
    assert all(math.isfinite(v) for v in run.data.metrics.values())
    assert 0 <= run.data.metrics["time/data_fraction"] <= 1
    assert run.data.params["train.loss"] == "poisson" and "provenance.git_sha" in run.data.params
    assert len(run.data.params["provenance.data_manifest_sha256"]) == 64
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(res.run_id)}
    assert {"checkpoint", "eval", "test_table.md"} <= artifacts
    assert any(a.path.endswith(".png") for a in client.list_artifacts(res.run_id, "eval"))
    assert "| topn_nms / words_all |" in res.table
    # resume: same output, more steps; continues the same MLflow run at the right step
    resumed = fit(train_config(tmp_path, tiny_words_all, mlflow_uri, steps=6, resume="true"))
    assert resumed.run_id == res.run_id
    steps = [m.step for m in client.get_metric_history(res.run_id, "val/topn_nms_acc20ms")]
    assert steps == [2, 4, 6]
    assert read_manifest(latest_checkpoint(tmp_path / "out")).global_step == 6


@pytest.mark.slow
def test_train_binary_job(ray_session, tiny_words_all, mlflow_uri, tmp_path):
    res = fit(train_config(tmp_path, tiny_words_all, mlflow_uri, loss="binary", steps=2, **{"eval.default_decoder": "topk",
                                                                                   "eval.decoders": "topk,topn_nms"}))
    manifest = read_manifest(res.best_checkpoint)
    assert manifest.head == "binary" and manifest.default_decoder == "topk"
    _, run = _run(mlflow_uri, res.run_id)
    assert "val/topk_acc40ms" in run.data.metrics and "val/posterior_mode_acc20ms" not in run.data.metrics
    out = tmp_path / "eval.json"
    subprocess.run([sys.executable, "jobs/evaluate.py", "--checkpoint", str(res.best_checkpoint), "--data",
                    str(tiny_words_all), "--output-json", str(out), "--decoders", "topk,topn_nms,posterior_mode"],
                   cwd=ROOT, check=True, capture_output=True, text=True)
    scores = json.loads(out.read_text())
    assert set(scores) == {"topk", "topn_nms"}  # posterior_mode needs a Poisson head: not offered
    assert 0.0 <= scores["topk"]["all"]["acc@100ms"] <= 1.0


def test_bad_inputs_fail_before_any_worker(ray_session, tiny_words_all, mlflow_uri, tmp_path):
    with pytest.raises(BackboneError, match="unknown model 'tiny-gpt'"):
        fit(train_config(tmp_path, tiny_words_all, mlflow_uri, **{"model.name": "tiny-gpt"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardDirectoryError, match="no shard"):
        fit(train_config(tmp_path, tmp_path / "empty", mlflow_uri))
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['train.epochs'\]"):
        train_config(tmp_path, tiny_words_all, mlflow_uri, **{"train.epochs": 3})
    # a binary checkpoint where a Poisson run resumes
    ckpt = tmp_path / "out" / "ray" / "run-x" / "checkpoint_0"
    ckpt.mkdir(parents=True)
    (ckpt / "manifest.json").write_text(tiny_manifest(head="binary", global_step=3).to_json())
    with pytest.raises(CheckpointError, match="has a 'binary' head, but a 'poisson' head was asked for"):
        fit(train_config(tmp_path, tiny_words_all, mlflow_uri, resume="true"))
    assert not list((tmp_path / "out" / "ray").glob("run-1*"))  # no Ray Train run was started
    bad = subprocess.run([sys.executable, "jobs/train_poisson.py", "--output", str(tmp_path / "o2"), "train.lrr=1"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown config key(s) ['train.lrr']" in bad.stderr
