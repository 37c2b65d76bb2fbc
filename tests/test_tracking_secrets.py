"""Secrets come from the environment and never reach MLflow params, tags, artifacts or the printed output."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from framecall.tracking import redact, secret_values


def test_redact_drops_url_credentials_and_secret_environment_values():
    env = {"MLFLOW_TRACKING_PASSWORD": "hunter2-long", "HF_TOKEN": "hf_abcdefgh", "TOKENIZERS_PARALLELISM": "false-ish",
           "FRAMECALL_API_KEY": "short", "PATH": "/usr/bin:/bin"}
    assert secret_values(env) == ["hunter2-long", "hf_abcdefgh"]  # named like a secret and 8+ characters
    text = "uri=https://alice:pw@mlflow.example:5000/x pw=hunter2-long hf=hf_abcdefgh path=/usr/bin:/bin"
    assert redact(text, env) == "uri=https://***@mlflow.example:5000/x pw=*** hf=*** path=/usr/bin:/bin"
    assert redact("sqlite:////abs/mlflow.db", env) == "sqlite:////abs/mlflow.db"


def _artifact_texts(client, run_id: str, root: Path) -> dict[str, bytes]:
    local = Path(client.download_artifacts(run_id, "", str(root)))
    return {str(p.relative_to(local)): p.read_bytes() for p in local.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_training_run_logs_no_planted_secret(ray_session, tiny_words_all, mlflow_uri, tmp_path, monkeypatch, capsys):
    """A secret in the environment (MLflow password, a judge's API key), also typed by mistake into a config
    value (the run name), is absent from the run's params, tags, name, every artifact, the output directory's
    text files and what the job printed."""
    from mlflow.tracking import MlflowClient

    from framecall.train.cli import train_main

    secret, key = f"planted-{uuid.uuid4().hex}", f"judgekey-{uuid.uuid4().hex}"
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", secret)
    monkeypatch.setenv("JUDGE_API_KEY", key)
    out = tmp_path / "out"
    train_main("poisson", ["--data", str(tiny_words_all), "--output", str(out), "--max-steps", "2",
                           "--num-workers", "1", "train.batch_size=2", "train.eval_every=2", "eval.figures=1",
                           f"mlflow.tracking_uri={mlflow_uri}", f"mlflow.run_name=run-{secret}-{key}",
                           "data.make_if_missing=false"])
    printed = capsys.readouterr().out
    run_id = printed.split("MLflow run ")[1].split()[0]
    client = MlflowClient(mlflow_uri)
    run = client.get_run(run_id)
    logged = [run.info.run_name or "", *run.data.params.values(), *run.data.tags.values()]
    assert run.data.params  # the config was logged, redacted
    for value in (secret, key):
        assert not [v for v in logged if value in v]
        assert value not in printed
        leaked = [name for name, data in _artifact_texts(client, run_id, tmp_path / "art").items()
                  if value.encode() in data]
        assert leaked == []
        on_disk = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json", ".md", ".txt")
                   and value in p.read_text(errors="replace")]
        assert on_disk == []
    assert "***" in run.data.params["mlflow.run_name"]
