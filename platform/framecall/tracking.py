"""MLflow: the driver creates the run, rank 0 logs to it by id, checkpoints carry the id.

Used by training, sweeps, PolyAudio and the benchmarks (not part of the training package).

The default store is a SQLite file at an absolute path with artifacts beside it, so a
job run from a temporary copy of the working directory (``ray job submit
--working-dir``) still writes where the user looks: ``mlflow ui --backend-store-uri
sqlite:///ABS/runs/.../mlflow.db``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator, Mapping

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


# environment variables whose values are secrets: MLFLOW_TRACKING_PASSWORD / _TOKEN, FRAMECALL_API_KEY, HF_TOKEN,
# AWS_SECRET_ACCESS_KEY, RAY_AUTH_TOKEN... (a whole name segment: TOKENIZERS_PARALLELISM is no secret)
SECRET_NAME = re.compile(r"(^|_)(API_KEY|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIALS?)(_|$)", re.IGNORECASE)
URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
REDACTED = "***"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values (8+ characters, longest first) of the environment variables named like secrets."""
    env = os.environ if environ is None else environ
    return sorted({v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 8}, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret environment value replaced by ``***`` and the credentials of any URL
    (``https://user:pass@host``) dropped: what MLflow params, tags, logged text and printed lines carry."""
    text = URL_USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    for secret in secret_values(environ):
        text = text.replace(secret, REDACTED)
    return text


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = redact(str(v))[:500]
    return out


def is_server_uri(tracking_uri: str) -> bool:
    """A tracking server (http, https, databricks) rather than a store file on this machine."""
    return tracking_uri.split(":", 1)[0] in ("http", "https", "databricks")


def get_or_create_experiment(client, name: str, artifact_root: Path) -> str:
    """``artifact_root`` is used for a local store only: a tracking server puts a new experiment's
    artifacts where it is configured to (``--artifacts-destination``, proxied as mlflow-artifacts:),
    which every node of a cluster reaches; a path on the driver's disk would not be."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    local = not is_server_uri(str(client.tracking_uri))
    return client.create_experiment(name, artifact_location=artifact_root.resolve().as_uri() if local else None)


def start_run(tracking_uri: str, experiment: str, artifact_root: Path, run_name: str | None,
              params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    """Create a run (driver side) and return its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp_id = get_or_create_experiment(client, experiment, artifact_root)
    run = client.create_run(exp_id, run_name=run_name and redact(run_name),
                            tags={k: redact(str(v)) for k, v in tags.items()})
    flat = flatten(params)
    items = list(flat.items())
    from mlflow.entities import Param

    for i in range(0, len(items), 90):
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in items[i : i + 90]])
    return run.info.run_id


TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "INTERNAL_ERROR", "DEADLINE_EXCEEDED"}


def is_transient(error: BaseException) -> bool:
    """A store error worth retrying: a locked SQLite file ("database is locked" is an
    ``OperationalError``), a dropped connection, a server asking to come back later."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if type(error).__name__ == "OperationalError" or "database is locked" in str(error):
        return True
    return getattr(error, "error_code", None) in TRANSIENT_CODES


class RunLogger:
    """Logs to an existing run by id (rank 0 of the train workers, or the driver).

    Logging never raises: a transient store error is retried ``retries`` times with exponential
    backoff from ``backoff_s``; what still fails is counted in ``lost`` (metric values; other calls
    count one each) and warned about, and training goes on. Metric steps only move forward per key:
    a step at or below the last one logged for that key (or below ``floor``, set after a restore to
    the run's last logged step) is dropped, so a restarted worker never writes a step twice.
    ``background=True`` logs metrics from a thread, so a slow or locked store never stalls training
    (``flush()`` waits for it).
    """

    def __init__(self, tracking_uri: str, run_id: str, retries: int = 6, backoff_s: float = 0.25,
                 background: bool = False) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self.retries, self.backoff_s = retries, backoff_s
        self.lost = 0
        self.retried = 0
        self.floor = -1
        self._last_step: dict[str, int] = {}
        self._queue: Any = None
        if background:
            import queue
            import threading

            self._queue = queue.Queue()
            threading.Thread(target=self._drain, name="mlflow-logger", daemon=True).start()

    def _call(self, what: str, fn, *args, weight: int = 1, **kwargs) -> bool:
        """``fn(*args, **kwargs)`` with retries; -> whether it went through (else ``weight`` lost)."""
        import logging
        import time

        for attempt in range(self.retries + 1):
            try:
                fn(*args, **kwargs)
                return True
            except Exception as e:  # noqa: BLE001 - a logging failure must not end training
                if attempt < self.retries and is_transient(e):
                    self.retried += 1
                    time.sleep(self.backoff_s * 2**attempt)
                    continue
                self.lost += weight
                logging.getLogger(__name__).warning("MLflow %s lost after %d attempt(s) (%d lost so far): %s",
                                                    what, attempt + 1, self.lost, e)
                return False
        return False

    def last_logged_step(self) -> int | None:
        """The highest training step of any metric of the run so far (-1: none; None: the store did not
        answer). MLflow's system metrics (``system/*``) count their own samples, not training steps."""
        steps = [-1]

        def read() -> None:
            for key in self.client.get_run(self.run_id).data.metrics:
                if not key.startswith("system/"):
                    steps.extend(m.step for m in self.client.get_metric_history(self.run_id, key))

        return max(steps) if self._call("read of the metric history", read, weight=0) else None

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = []
        for k, v in values.items():
            key = k.replace("@", "_at_")
            if step <= max(self.floor, self._last_step.get(key, -1)):
                continue  # already in the history (a re-run step after a restore, or a repeat)
            self._last_step[key] = step
            batch.append(Metric(key, float(v), ts, step))
        for i in range(0, len(batch), 200):
            self._submit("log_batch", self.client.log_batch, self.run_id, metrics=batch[i : i + 200],
                         weight=len(batch[i : i + 200]))

    def _submit(self, what: str, fn, *args, weight: int = 1, **kwargs) -> None:
        """Run a logging call now, or hand it to the background thread."""
        if self._queue is None:
            self._call(what, fn, *args, weight=weight, **kwargs)
        else:
            self._queue.put((what, fn, args, kwargs, weight))

    def _drain(self) -> None:
        while True:
            what, fn, args, kwargs, weight = self._queue.get()
            try:
                self._call(what, fn, *args, weight=weight, **kwargs)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every metric handed to a background logger is logged or counted lost."""
        if self._queue is not None:
            self._queue.join()

    def figure(self, fig, path: str) -> None:
        """Log a matplotlib figure as ``path`` (rendered now; uploaded in the background if there is one)."""
        if self._queue is None:
            self._call(f"figure {path}", self.client.log_figure, self.run_id, fig, path)
            return
        import tempfile

        local = Path(tempfile.mkdtemp(prefix="framecall-fig-")) / Path(path).name
        fig.savefig(local)
        parent = str(Path(path).parent) if str(Path(path).parent) != "." else None
        self._submit(f"figure {path}", self._upload_and_remove, local, parent)

    def _upload_and_remove(self, local: Path, artifact_dir: str | None) -> None:
        self.client.log_artifact(self.run_id, str(local), artifact_dir)
        import shutil

        shutil.rmtree(local.parent, ignore_errors=True)

    def artifacts(self, local_dir: str | Path, path: str) -> None:
        self._call(f"artifacts {path}", self.client.log_artifacts, self.run_id, str(local_dir), path)

    def artifact(self, local_file: str | Path, artifact_dir: str | None = None) -> None:
        self._call(f"artifact {Path(local_file).name}", self.client.log_artifact, self.run_id, str(local_file),
                   artifact_dir)

    def text(self, text: str, path: str) -> None:
        self._call(f"text {path}", self.client.log_text, self.run_id, redact(text), path)

    def set_tag(self, key: str, value: str) -> None:
        self._call(f"tag {key}", self.client.set_tag, self.run_id, key, redact(str(value)))

    def param(self, key: str, value: str) -> None:
        self._call(f"param {key}", self.client.log_param, self.run_id, key, redact(str(value)))

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        self._call(f"status {status}", self.client.set_terminated, self.run_id, status)


def log_resolved_config(config: Any, output_dir: str | Path, tracking_uri: str, run_id: str) -> Path:
    """Save the job's resolved config as ``output_dir/config.resolved.yaml`` and log that file to the
    run (artifact ``config.resolved.yaml``): ``--config`` of it re-runs the job. -> the saved path."""
    from framecall.config import save_resolved

    path = save_resolved(config, output_dir)
    path.write_text(redact(path.read_text()))  # secrets come from the environment, never from a saved config
    RunLogger(tracking_uri, run_id).artifact(path)
    return path


@contextlib.contextmanager
def system_metrics(tracking_uri: str, run_id: str, enabled: bool = True, interval_s: float = 10.0) -> Iterator[None]:
    """While the block runs, sample this node's CPU, memory, disk, network (and GPU, where pynvml
    finds one) into the run as ``system/*`` metrics: what ``mlflow.start_run(log_system_metrics=True)``
    does, for a run created by id. Needs psutil. Steps continue after those already logged (--resume)."""
    if not enabled:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True,
                                   tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
