"""Token baseline, interpolated loss, multi-task mixture and the model registry, end to end
on the tiny model with 2 Ray Train workers and a few steps."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from framecall.models.checkpoint import read_manifest
from framecall.models.frame_model import load_frame_model
from framecall.train.evaluate import evaluate_checkpoint
from framecall.train.runner import fit
from tests_helpers import train_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_events(tmp_path_factory):
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("tiny_events")
    with ShardWriter(out) as w:
        w.write_all(generate(SynthConfig(task="events", num=16, seed=6, max_seconds=3.0,
                                         splits={"train": 0.5, "val": 0.25, "test": 0.25})))
    return out


def _metrics(mlflow_uri, run_id):
    from mlflow.tracking import MlflowClient

    return MlflowClient(mlflow_uri).get_run(run_id).data


@pytest.mark.slow
def test_train_tokens_job(ray_session, tiny_words_all, mlflow_uri, tmp_path):
    cfg = train_config(tmp_path, tiny_words_all, mlflow_uri, steps=2, **{
        "train.objective": "tokens", "eval.max_new_tokens": 12, "mlflow.registered_model_name": "t-tokens"})
    res = fit(cfg)
    manifest = read_manifest(res.best_checkpoint)
    assert manifest.head == "tokens" and manifest.default_decoder == "tokens" and manifest.token_output
    assert manifest.token_prompt_order == "audio_first"  # the models' chat order
    data = _metrics(mlflow_uri, res.run_id)
    for k in ("train/token_loss", "val/tokens_acc20ms", "val/tokens_parse_failure_rate",
              "test/tokens_parse_failure_rate", "test/tokens_mad_s"):
        assert k in data.metrics, k
    assert "train/frame_loss" not in data.metrics
    assert 0.0 <= data.metrics["test/tokens_parse_failure_rate"] <= 1.0
    assert "parse_failure_rate" in res.table and "| tokens / words_all |" in res.table
    assert res.registered_model == "models:/t-tokens/1"
    # the evaluate job reports the parse-failure rate beside the timestamp metrics
    out = subprocess.run([sys.executable, "jobs/evaluate.py", "--checkpoint", str(res.best_checkpoint), "--data",
                          str(tiny_words_all), "--max-new-tokens", "12"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "parse_failure_rate" in out.stdout and "tokens / words_all" in out.stdout


@pytest.mark.slow
def test_interpolated_mixture_registered_and_reloaded(ray_session, tiny_words_all, tiny_events, mlflow_uri, tmp_path):
    mixture = "{" + f"{tiny_words_all}: 1.0, {tiny_events}: 3.0" + "}"
    cfg = train_config(tmp_path, tiny_words_all, mlflow_uri, steps=2, **{
        "train.objective": "interpolated", "train.interp_lambda": 0.05, "eval.max_new_tokens": 12,
        "data.mixture": mixture, "mlflow.registered_model_name": "t-interp"})
    res = fit(cfg)
    manifest = read_manifest(res.best_checkpoint)
    assert manifest.loss == "interpolated+poisson" and manifest.head == "poisson"
    assert manifest.token_output and manifest.token_prompt_order == "question_first"
    assert manifest.tasks == ["events", "words_all"] and manifest.interp_lambda == 0.05
    data = _metrics(mlflow_uri, res.run_id)
    for k in ("train/token_loss", "train/frame_loss", "train/loss", "val/tokens_acc40ms", "val/topn_nms_acc40ms",
              "test/posterior_mode_acc40ms", "test/tokens_parse_failure_rate"):
        assert k in data.metrics, k
    # Table 5 layout: token output and Poisson output, per task
    for row in ("tokens / events", "tokens / words_all", "topn_nms / events", "posterior_mode / words_all"):
        assert f"| {row} |" in res.table, row
    tags = _metrics(mlflow_uri, res.run_id).tags
    assert tags["framecall.registered_model"] == res.registered_model
    # the registered model, loaded by URI, predicts exactly what its checkpoint does
    scores_dir, _, recs_dir = evaluate_checkpoint(res.best_checkpoint, [tiny_words_all, tiny_events],
                                                  decoders=["topn_nms", "tokens"], max_new_tokens=12)
    import os

    os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    try:
        scores_uri, _, recs_uri = evaluate_checkpoint(res.registered_model, [tiny_words_all, tiny_events],
                                                      decoders=["topn_nms", "tokens"], max_new_tokens=12)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    assert [r["preds"] for r in recs_uri] == [r["preds"] for r in recs_dir]
    assert json.dumps(scores_uri) == json.dumps(scores_dir)  # NaN MADs (no hits) compare equal as text
    a, _ = load_frame_model(res.best_checkpoint)
    assert isinstance(a.head, torch.nn.Module) and a.token_output


def test_mixture_weights_set_the_epoch_composition(ray_session):
    import ray.data

    from framecall.train.runner import mix_datasets

    a = ray.data.from_items([{"task": "a"}] * 30)
    b = ray.data.from_items([{"task": "b"}] * 10)
    mixed = mix_datasets([(a, 1.0), (b, 3.0)], seed=0)
    tasks = [r["task"] for r in mixed.take_all()]
    assert len(tasks) == 40 and tasks.count("a") == 10 and tasks.count("b") == 30  # b repeated 3x
    assert tasks[:20].count("b") not in (0, 20)  # shuffled, not one source after the other
