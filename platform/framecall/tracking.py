"""MLflow: the driver creates the run, rank 0 logs to it by id, checkpoints carry the id.

Used by training, sweeps, PolyAudio and the benchmarks (not part of the training package).

The default store is a SQLite file at an absolute path with artifacts beside it, so a
job run from a temporary copy of the working directory (``ray job submit
--working-dir``) still writes where the user looks: ``mlflow ui --backend-store-uri
sqlite:///ABS/runs/.../mlflow.db``.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any, Mapping

PACKAGES = ("torch", "transformers", "ray", "peft", "mlflow", "pyarrow", "numpy", "framecall")


def default_tracking_uri(output_dir: str | Path) -> str:
    return f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def git_sha(path: str | Path | None = None) -> str:
    here = Path(path or __file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=5)
        return sha + ("-dirty" if dirty.stdout.strip() else "") if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


def get_or_create_experiment(client, name: str, artifact_root: Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root.resolve().as_uri())


def start_run(tracking_uri: str, experiment: str, artifact_root: Path, run_name: str | None,
              params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    """Create a run (driver side) and return its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp_id = get_or_create_experiment(client, experiment, artifact_root)
    run = client.create_run(exp_id, run_name=run_name, tags=dict(tags))
    flat = flatten(params)
    items = list(flat.items())
    from mlflow.entities import Param

    for i in range(0, len(items), 90):
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in items[i : i + 90]])
    return run.info.run_id


class RunLogger:
    """Logs to an existing run by id (rank 0 of the train workers, or the driver)."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(k.replace("@", "_at_"), float(v), ts, step) for k, v in values.items()]
        for i in range(0, len(batch), 200):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 200])

    def figure(self, fig, path: str) -> None:
        self.client.log_figure(self.run_id, fig, path)

    def artifacts(self, local_dir: str | Path, path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), path)

    def text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)
