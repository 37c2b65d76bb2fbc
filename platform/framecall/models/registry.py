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
import tempfile
import time
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
    (``models:/name@best``) are downloaded afresh each time; numbered versions are immutable and
    reused. A download lands in a private staging directory, its weights are checked against the
    manifest's digests, and only then is it renamed into place (atomic): a download killed half
    way is never reused, and a reader never sees a half-written cache entry.
    """
    if not is_model_uri(ref):
        return Path(ref)
    ref = str(ref)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RegistryError(f"{ref}: set MLFLOW_TRACKING_URI (or pass the tracking URI) to resolve a model URI")
    target = cache_entry(ref, uri)
    root = target.parent
    immutable = ref.startswith("models:/") and ref.rstrip("/").split("/")[-1].isdigit()
    if immutable and (target / COMPLETE).is_file():
        return _checkpoint_in(target, ref)
    staged = _download(ref, uri, root, target.name)
    _publish(staged, target, replace_existing=not immutable)
    return _checkpoint_in(target, ref)


def cache_entry(ref: str, tracking_uri: str) -> Path:
    """The cache directory of a model URI from one tracking server (complete downloads only)."""
    return cache_dir("registry") / hashlib.sha256(f"{tracking_uri}|{ref}".encode()).hexdigest()[:16]


COMPLETE = ".framecall-complete"
"""Written into a staged download after its digests verify; a cache entry without it is never used."""
STALE_STAGING_S = 3600.0
"""Staging directories of downloads this old are taken as killed and removed."""


def _download(ref: str, uri: str, root: Path, key: str) -> Path:
    """Download ``ref`` into a fresh staging directory under ``root`` and verify it; -> that directory."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from framecall.models.checkpoint import CheckpointError, read_manifest, verify_weights

    for old in root.glob(f".{key}.staging-*"):
        if time.time() - old.stat().st_mtime > STALE_STAGING_S:
            shutil.rmtree(old, ignore_errors=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{key}.staging-", dir=root))
    try:
        source = _version_source(ref, uri) if ref.startswith("models:/") else ref
        mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=uri, dst_path=str(staged))
        found = _find_manifest(staged)
        if found is None:
            raise RegistryError(f"{ref}: the artifacts hold no manifest.json (not a framecall checkpoint)")
        verify_weights(found, read_manifest(found))
        (staged / COMPLETE).write_text(json.dumps({"ref": ref, "tracking_uri": uri, "checkpoint":
                                                   str(found.relative_to(staged))}))
        return staged
    except BaseException as e:
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(e, MlflowException):
            raise RegistryError(f"{ref} (tracking URI {uri}): {e.message}") from None
        if isinstance(e, CheckpointError):
            raise RegistryError(f"{ref}: downloaded checkpoint refused: {e}") from None
        raise


def _publish(staged: Path, target: Path, replace_existing: bool) -> None:
    """Rename a verified download into place. An older entry of a moving ref (latest, an alias) is renamed
    away first and removed after; a complete entry of an immutable version that another process published
    meanwhile is kept (readers may be loading from it)."""
    if not replace_existing and (target / COMPLETE).is_file():
        shutil.rmtree(staged, ignore_errors=True)
        return
    retired = None
    if target.exists():
        retired = target.with_name(f".{target.name}.retired-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(target, retired)
        except FileNotFoundError:
            retired = None
    try:
        os.rename(staged, target)
    except OSError:
        if not (target / COMPLETE).is_file():
            raise
        shutil.rmtree(staged, ignore_errors=True)  # lost the race to an identical, complete download
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _checkpoint_in(entry: Path, ref: str) -> Path:
    record = json.loads((entry / COMPLETE).read_text())
    found = entry / record["checkpoint"]
    if not (found / "manifest.json").is_file():
        raise RegistryError(f"{ref}: cache entry {entry} lost its manifest.json; remove the entry to download again")
    return found


def _version_source(ref: str, uri: str) -> str:
    """models:/name/<version | latest> or models:/name@alias -> the version's source URI."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)  # explicit: the process-wide registry URI may differ
    name, version = model_version(ref, uri)
    return client.get_model_version(name, version).source


def _find_manifest(root: Path) -> Path | None:
    hits = sorted(root.glob("**/manifest.json"), key=lambda p: len(p.parts)) if root.is_dir() else []
    return hits[0].parent if hits else None


def register_checkpoint(tracking_uri: str, run_id: str, name: str, artifact_path: str = "checkpoint",
                        tags: Mapping[str, Any] | None = None, description: str | None = None,
                        alias: str | None = None) -> int:
    """Register ``runs:/<run_id>/<artifact_path>`` as a new version of ``name``; -> the version.

    ``description`` is the version's model card (:func:`model_card`); ``alias`` (e.g. ``latest-good``)
    is moved to the new version, so ``models:/name@alias`` loads it."""
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
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def model_version(ref: str, tracking_uri: str) -> tuple[str, str]:
    """(registered name, version number) that ``models:/name/N``, ``models:/name/latest`` or
    ``models:/name@alias`` points at now (``latest``: the highest version number)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    body = ref[len("models:/"):].rstrip("/") if ref.startswith("models:/") else ""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return name, str(client.get_model_version_by_alias(name, alias).version)
        name, _, version = body.rpartition("/")
        if not name:
            raise RegistryError(f"{ref}: expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS")
        if version == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise RegistryError(f"{ref}: model {name!r} has no versions")
            version = str(max(int(v.version) for v in versions))
        return name, version
    except MlflowException as e:
        raise RegistryError(f"{ref} (tracking URI {tracking_uri}): {e.message}") from None


def model_card(manifest: Any, metrics: Mapping[str, float], title: str) -> str:
    """A registered version's description (Markdown): what the checkpoint is (the manifest's facts)
    and how it scored on the test split (``metrics``: name -> value)."""
    facts = {"backbone": manifest.backbone, "model type": manifest.model_type, "stage": manifest.stage,
             "head": manifest.head, "loss": manifest.loss, "objective": manifest.objective,
             "default decoder": manifest.default_decoder, "tasks": ", ".join(manifest.tasks) or "-",
             "fine-tuning": manifest.finetune + (f" (LoRA r={manifest.lora.r})" if manifest.lora else ""),
             "frame": f"{manifest.frame_s * 1000:g} ms / {manifest.subframes} sub-frame(s)",
             "step": manifest.global_step, "git": manifest.git_sha, "data manifest sha256":
             manifest.data_manifest_sha256 or "-", "MLflow run": manifest.mlflow_run_id}
    lines = [f"# {title}", "", "| fact | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts.items())]
    if metrics:
        lines += ["", "Test metrics:", "", "| metric | value |", "|---|---|",
                  *(f"| {k} | {v:.4g} |" for k, v in metrics.items())]
    return "\n".join(lines) + "\n"
