"""MLflow model registry for framecall checkpoints (standalone exports: :mod:`framecall.models.export`).

A registered model version's source is the run's ``checkpoint`` artifact directory (our
manifest + safetensors), so ``models:/name/version`` resolves to exactly the directory
``fit()`` wrote. Tags on the version carry what a consumer checks before loading: tasks,
head, loss and the test metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from framecall.cache import cache_dir

URI_SCHEMES = ("models:/", "runs:/")


class RegistryError(ValueError):
    """A model URI that cannot be resolved to a framecall checkpoint."""


def is_model_uri(ref: str | Path) -> bool:
    return isinstance(ref, str) and ref.startswith(URI_SCHEMES)


def resolve_checkpoint(ref: str | Path, tracking_uri: str | None = None) -> Path:
    """A checkpoint directory for ``ref``: a path as is, an MLflow URI downloaded (cached per URI).

    ``tracking_uri`` defaults to ``MLFLOW_TRACKING_URI``. ``models:/name/latest`` and aliases
    (``models:/name@best``) are downloaded afresh each time; numbered versions are immutable.
    """
    if not is_model_uri(ref):
        return Path(ref)
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RegistryError(f"{ref}: set MLFLOW_TRACKING_URI (or pass the tracking URI) to resolve a model URI")
    key = hashlib.sha256(f"{uri}|{ref}".encode()).hexdigest()[:16]
    target = cache_dir("registry") / key
    immutable = ref.startswith("models:/") and ref.rstrip("/").split("/")[-1].isdigit()
    if not (immutable and _find_manifest(target)):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        try:
            source = _version_source(ref, uri) if ref.startswith("models:/") else ref
            mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=uri, dst_path=str(target))
        except MlflowException as e:
            shutil.rmtree(target, ignore_errors=True)
            raise RegistryError(f"{ref} (tracking URI {uri}): {e.message}") from None
    found = _find_manifest(target)
    if found is None:
        raise RegistryError(f"{ref}: the artifacts hold no manifest.json (not a framecall checkpoint)")
    return found


def _version_source(ref: str, uri: str) -> str:
    """models:/name/<version | latest> or models:/name@alias -> the version's source URI."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)  # explicit: the process-wide registry URI may differ
    body = ref[len("models:/"):].rstrip("/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return client.get_model_version_by_alias(name, alias).source
    name, _, version = body.rpartition("/")
    if not name:
        raise RegistryError(f"{ref}: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS")
    if version == "latest":
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise RegistryError(f"{ref}: model {name!r} has no versions")
        version = str(max(int(v.version) for v in versions))
    return client.get_model_version(name, version).source


def _find_manifest(root: Path) -> Path | None:
    hits = sorted(root.glob("**/manifest.json"), key=lambda p: len(p.parts)) if root.is_dir() else []
    return hits[0].parent if hits else None


def register_checkpoint(tracking_uri: str, run_id: str, name: str, artifact_path: str = "checkpoint",
                        tags: Mapping[str, Any] | None = None, description: str | None = None) -> int:
    """Register ``runs:/<run_id>/<artifact_path>`` as a new version of ``name``; -> the version."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        client.create_registered_model(name, description="framecall frame-level / token timestamp models")
    except MlflowException as e:
        if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    version = client.create_model_version(
        name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id,
        tags={k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (tags or {}).items()},
        description=description,
    )
    return int(version.version)
