"""Shared fixtures: one local Ray instance per test session, small corpora in tmp dirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))  # works without `pip install -e .` too
sys.path.insert(0, str(ROOT / "tests"))  # tests_helpers

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Hugging Face download/loading bars off in tests only (Ray workers inherit it); a user sees them
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        # more logical CPUs than cores: Train workers and Data tasks must not starve each other
        # address="local": a fresh instance even when a Ray head is already running here; the dashboard
        # serves the State API that Train's placement-group cleaner needs (trials stopped by Tune).
        # One logical GPU (none is here): actors asking for a GPU get placed and run on CPU; ray.use_gpu auto
        # ignores it (no accelerator_type resource), so training stays on CPU workers
        ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=True, log_to_driver=False,
                 configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "platform")}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def words_all_dir(tmp_path_factory):
    """40 synthetic words_all items in 3 shards."""
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("words_all")
    cfg = SynthConfig(task="words_all", num=40, seed=3, max_seconds=4.0)
    with ShardWriter(out, rows_per_shard=16) as w:
        w.write_all(generate(cfg))
    return out


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    """One SQLite MLflow store per session (each fresh store costs seconds of migrations)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def tiny_words_all(tmp_path_factory):
    """A small words_all corpus for training tests (train/val/test splits all present)."""
    from framecall.data.shards import ShardWriter
    from framecall.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("tiny_words_all")
    cfg = SynthConfig(task="words_all", num=24, seed=5, max_seconds=3.0,
                      splits={"train": 0.5, "val": 0.25, "test": 0.25})
    with ShardWriter(out, rows_per_shard=12) as w:
        w.write_all(generate(cfg))
    return out


@pytest.fixture(scope="session")
def serve_url(ray_session):
    """One Serve HTTP proxy on a free loopback port for the session (Serve keeps its first
    http_options: a second serve.start() with another port would silently reuse the first)."""
    from ray import serve

    from framecall.serve_app import start_http_proxy
    from tests_helpers import free_port

    yield start_http_proxy("127.0.0.1", free_port())
    serve.shutdown()
