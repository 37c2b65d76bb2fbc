"""Training against an MLflow tracking server (what a cluster shares), not a SQLite file: a real
`mlflow server` with a SQLite backend and proxied artifacts, started by the test on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from framecall.train.runner import fit
from tests_helpers import free_port, train_config


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    store, artifacts = tmp_path / "server.db", tmp_path / "server-artifacts"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{store}", "--artifacts-destination", str(artifacts),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not answer /health within 180 s")
    yield url, artifacts
    proc.terminate()
    proc.wait(30)


@pytest.mark.slow
def test_training_logs_to_a_tracking_server_with_served_artifacts(ray_session, tiny_words_all, mlflow_server,
                                                                  tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    url, artifacts = mlflow_server
    res = fit(train_config(tmp_path, tiny_words_all, url, steps=2))
    client = MlflowClient(url)
    run = client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri  # served, not a local path
    assert [m.step for m in client.get_metric_history(res.run_id, "val/topn_nms_acc20ms")] == [2]
    names = {f.path for f in client.list_artifacts(res.run_id)}
    assert "config.resolved.yaml" in names, names
    # the files are in the server's artifact store, not in the run's output directory
    assert any(p.name == "config.resolved.yaml" for p in artifacts.rglob("*"))
    assert not (Path(res.output) / "mlartifacts").exists()
    assert res.registered_model  # the registered version loads through the server
    from framecall.inference import FrameLocalizer

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    loc = FrameLocalizer.from_pretrained(res.registered_model)
    assert loc.manifest.head == "poisson"
