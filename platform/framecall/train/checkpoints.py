"""Training checkpoints that are complete or ignored: a marker written last, verified before use.

A training checkpoint (see :mod:`framecall.models.checkpoint` for the files) is *complete* when
``complete.json`` is present and every file it lists has the listed sha256. The marker is written
by :func:`upload_complete` (Ray Train's ``checkpoint_upload_fn``) after Ray has copied the whole
directory to storage, and atomically (temporary name, then a rename), so a checkpoint still being
copied, or one whose copy died half way, has no marker and is never resumed from.

:func:`resume_candidates` lists the complete checkpoints of an output directory, newest first;
:func:`pick_checkpoint` verifies them in that order and falls back past broken ones, saying which
file was wrong. :func:`replace_dir` publishes a directory (``best/``) atomically.

Checkpoints may live on any pyarrow filesystem (Ray Train's ``storage_path`` / ``storage_filesystem``:
a shared mount, ``s3://``, ``gs://``, a ``SubTreeFileSystem``): :func:`open_storage` resolves the config's
``ray.storage_path``; a checkpoint on a non-local filesystem is a :class:`StoragePath`, listed with
``FileSelector`` and verified on a local copy made by ``pyarrow.fs.copy_files`` (:func:`fetch_checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pyarrow
import pyarrow.fs as pafs

from framecall.cache import cache_dir
from framecall.models.checkpoint import (
    MANIFEST, TRAINING_STATE, CheckpointError, CheckpointManifest, file_sha256, read_manifest, verify_weights,
)

COMPLETE = "complete.json"
"""The completion marker: {"global_step": int, "sha256": {relative path: hex digest}}."""


@dataclass(frozen=True)
class StoragePath:
    """A path on a pyarrow filesystem: checkpoint storage, or one checkpoint directory on it."""

    fs: pafs.FileSystem
    path: str
    """As pyarrow paths are: prefix-stripped (``bucket/x`` for ``s3://bucket/x``), POSIX separators."""

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def __str__(self) -> str:
        return self.path if self.local else f"{self.fs.type_name}:{self.path}"


def open_storage(value: str, default: Path, filesystem: pafs.FileSystem | None = None,
                 field: str = "ray.storage_path") -> StoragePath:
    """The checkpoint storage ``field`` names, created (and so checked reachable) before any worker starts.

    ``value``: "" (``default``, a local directory), a local or shared-filesystem path (made absolute), or a
    URI pyarrow resolves (``s3://bucket/x``, ``gs://b/x``, ``file:///x``); with ``filesystem`` (a pyarrow
    filesystem passed from Python) a path on it. Any failure is a ValueError naming ``field``."""
    try:
        if filesystem is not None:
            if not value:
                raise ValueError("a storage_filesystem needs the path on it")
            storage = StoragePath(filesystem, value)
        elif not value:
            storage = StoragePath(pafs.LocalFileSystem(), str(Path(default).resolve()))
        elif "://" in value:
            storage = StoragePath(*pafs.FileSystem.from_uri(value))
        else:
            storage = StoragePath(pafs.LocalFileSystem(), str(Path(value).expanduser().resolve()))
        storage.fs.create_dir(storage.path, recursive=True)
        if storage.fs.get_file_info(storage.path).type != pafs.FileType.Directory:
            raise OSError(f"{storage} is not a directory")
    except (OSError, ValueError, pyarrow.ArrowException) as e:
        raise ValueError(f"{field}={value!r}: not usable as checkpoint storage ({e})") from None
    return storage


def _train_run_storage() -> StoragePath | None:
    """The storage of the Ray Train run this process is a worker of; None outside a Train worker."""
    if "ray.train" not in sys.modules:  # a Train worker has imported it to run the loop
        return None
    import ray.train

    try:
        context = ray.train.get_context().get_storage()
    except (RuntimeError, NotImplementedError, AttributeError, DeprecationWarning):  # the last: in a Tune trial
        return None
    return StoragePath(context.storage_filesystem, context.storage_fs_path)


def as_storage(root: Path | str | StoragePath) -> StoragePath:
    """``root`` as a StoragePath. A plain path is a local directory, except in a Ray Train worker whose
    run stores on another filesystem and whose storage path it is: the training loop, handed only a
    path in its config, then reads the run's checkpoints from the run's own storage."""
    if isinstance(root, StoragePath):
        return root
    run = _train_run_storage()
    if run is not None and not run.local and Path(root).as_posix() == Path(run.path).as_posix():
        return run
    return StoragePath(pafs.LocalFileSystem(), str(root))


def file_digests(ckpt_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``ckpt_dir`` except the marker, by relative POSIX path."""
    return {p.relative_to(ckpt_dir).as_posix(): file_sha256(p)
            for p in sorted(ckpt_dir.rglob("*")) if p.is_file() and p.name != COMPLETE}


def upload_complete(checkpoint, checkpoint_dir_name: str):
    """``ray.train.report(checkpoint_upload_fn=...)``: Ray's own copy to storage, then the marker.

    Digests are taken from the local directory before the copy, so a copy that went wrong fails
    verification later instead of being blessed.
    """
    import ray.train

    digests = file_digests(Path(checkpoint.path))
    step = json.loads((Path(checkpoint.path) / MANIFEST).read_text()).get("global_step", 0)
    persisted = ray.train.get_context().get_storage().persist_current_checkpoint(checkpoint, checkpoint_dir_name)
    fs, tmp = persisted.filesystem, f"{persisted.path}/{COMPLETE}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps({"global_step": step, "sha256": digests}).encode())
    fs.move(tmp, f"{persisted.path}/{COMPLETE}")  # a rename: the marker appears whole or not at all
    return persisted


def verify_complete(ckpt_dir: Path) -> CheckpointManifest:
    """The manifest of a complete, intact checkpoint; else CheckpointError naming the file."""
    marker = ckpt_dir / COMPLETE
    if not marker.is_file():
        raise CheckpointError(f"{ckpt_dir}: no {COMPLETE} (incomplete: still being written, or its copy died)")
    try:
        digests = json.loads(marker.read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{marker}: unreadable completion marker ({e})") from None
    if TRAINING_STATE not in digests:
        raise CheckpointError(f"{ckpt_dir / TRAINING_STATE}: training state not in the checkpoint")
    for rel, want in digests.items():
        path = ckpt_dir / rel
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {COMPLETE})")
        if file_sha256(path) != want:
            raise CheckpointError(f"{path}: sha256 differs from {COMPLETE} (truncated or replaced)")
    manifest = read_manifest(ckpt_dir)
    verify_weights(ckpt_dir, manifest)
    return manifest


def _step_of(ckpt_dir: Path) -> int:
    try:
        return int(json.loads((ckpt_dir / COMPLETE).read_text()).get("global_step", -1))
    except (OSError, ValueError, TypeError, AttributeError):
        return -1  # unreadable marker: still a candidate, verification says why it is refused


def _read(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.readall()


def _stored_step(ckpt: StoragePath) -> int:
    try:
        return int(json.loads(_read(ckpt.fs, f"{ckpt.path}/{COMPLETE}")).get("global_step", -1))
    except (OSError, ValueError, TypeError, AttributeError, pyarrow.ArrowException):
        return -1


def _stored_candidates(root: StoragePath) -> list[StoragePath]:
    """resume_candidates on a non-local filesystem: markers found by one recursive listing."""
    infos = root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True, allow_not_found=True))
    found = [(StoragePath(root.fs, posixpath.dirname(i.path)), i.mtime.timestamp() if i.mtime else 0.0)
             for i in infos if i.type == pafs.FileType.File and i.base_name == COMPLETE]
    return [c for c, _ in sorted(found, key=lambda cm: (_stored_step(cm[0]), cm[1]), reverse=True)]


def resume_candidates(root: Path | str | StoragePath) -> Sequence[Path | StoragePath]:
    """Checkpoint directories under ``root`` that carry a completion marker, highest step first
    (ties: the newest marker first). Directories without one are not candidates at all.
    Local storage gives Paths; other filesystems StoragePaths (see :func:`as_storage`)."""
    storage = as_storage(root)
    if not storage.local:
        return _stored_candidates(storage)
    local = Path(storage.path)
    dirs = [m.parent for m in local.glob(f"**/{COMPLETE}")]
    return sorted(dirs, key=lambda d: (_step_of(d), (d / COMPLETE).stat().st_mtime), reverse=True)


def fetch_checkpoint(ckpt: StoragePath) -> Path:
    """A local copy of a checkpoint on storage (``pyarrow.fs.copy_files``), kept under
    ``$FRAMECALL_CACHE/checkpoints`` by location and marker, so that the driver and the workers of a
    node download it once; published by a rename, so a copy that died half way is never used."""
    key = hashlib.sha256(f"{ckpt}\n".encode() + _read(ckpt.fs, f"{ckpt.path}/{COMPLETE}")).hexdigest()[:24]
    root = cache_dir("checkpoints")
    dest = root / key
    if dest.is_dir():
        return dest
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        (staging / "d").mkdir()  # copy_files makes the subdirectories, not the destination itself
        pafs.copy_files(ckpt.path, str(staging / "d"), source_filesystem=ckpt.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        os.rename(staging / "d", dest)
    except OSError:
        if not dest.is_dir():  # else another process of this node published the same copy first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


@dataclass
class Pick:
    """The checkpoint chosen, its manifest, and why newer ones were passed over."""

    path: Path
    """A local directory: the checkpoint itself, or its verified local copy when it is on other storage."""
    manifest: CheckpointManifest
    skipped: list[str]
    """One line per newer candidate refused: its error, naming the file."""
    source: Path | StoragePath | None = None
    """Where the checkpoint is stored (``path`` for a local one)."""


def _local_and_verified(candidate: Path | StoragePath,
                        accept: Callable[[Path, CheckpointManifest], object] | None) -> tuple[Path, CheckpointManifest]:
    """-> (local directory, manifest) of a candidate that verifies; errors name the stored files."""
    if isinstance(candidate, Path):
        local = candidate
    else:
        try:
            local = fetch_checkpoint(candidate)
        except pyarrow.ArrowException as e:  # ArrowInvalid and friends are not OSErrors
            raise CheckpointError(f"{candidate}: cannot copy it from storage ({e})") from None
    try:
        try:
            manifest = verify_complete(local)
        except (CheckpointError, OSError):
            if not isinstance(candidate, Path):  # a broken copy is not kept: storage may be repaired
                shutil.rmtree(local, ignore_errors=True)
            raise
        if accept is not None:
            accept(local, manifest)
    except (CheckpointError, OSError) as e:
        if isinstance(candidate, Path):
            raise
        raise CheckpointError(str(e).replace(str(local), str(candidate))) from None  # name the stored file
    return local, manifest


def pick_checkpoint(candidates: Sequence[Path | StoragePath],
                    accept: Callable[[Path, CheckpointManifest], object] | None = None,
                    log: Callable[[str], None] = print) -> Pick | None:
    """The first of ``candidates`` that verifies (and that ``accept`` does not refuse by raising
    CheckpointError); every refusal is logged. None when no candidate verifies. A candidate on
    non-local storage is verified (and accepted) on its local copy, which becomes ``Pick.path``."""
    skipped = []
    for candidate in candidates:
        try:
            path, manifest = _local_and_verified(candidate, accept)
        except (CheckpointError, OSError) as e:
            skipped.append(str(e))
            log(f"[framecall] not resuming from {candidate}: {e}")
            continue
        if skipped:
            log(f"[framecall] falling back to {candidate} (step {manifest.global_step})")
        return Pick(path, manifest, skipped, candidate)
    return None


def _copy_stored(src: StoragePath, dest: Path, ignore: Callable | None) -> None:
    """Copy the files of ``src`` into the new local directory ``dest``, one ``copy_files`` each, leaving
    out what ``ignore`` (a ``shutil.ignore_patterns``) names: nothing ignored is ever downloaded."""
    infos = src.fs.get_file_info(pafs.FileSelector(src.path, recursive=True))
    dest.mkdir(parents=True)
    for info in infos:
        rel = posixpath.relpath(info.path, src.path)
        parts = rel.split("/")
        if info.type != pafs.FileType.File or (ignore is not None and any(
                ignore(str(dest.joinpath(*parts[:i])), [part]) for i, part in enumerate(parts))):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(info.path, str(dest / rel), source_filesystem=src.fs,
                        destination_filesystem=pafs.LocalFileSystem())


def replace_dir(src: Path | StoragePath, dest: Path, ignore: Callable | None = None) -> None:
    """Copy ``src`` (local, or on any storage) to ``dest`` so that ``dest`` is at every moment the old or
    the new copy in full: copy beside it, swap by renames, then delete the old one."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    if isinstance(src, StoragePath) and not src.local:
        _copy_stored(src, staging / "d", ignore)
    else:
        shutil.copytree(src.path if isinstance(src, StoragePath) else src, staging / "d", ignore=ignore)
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent)) / "d"
        os.rename(dest, old)
    os.rename(staging / "d", dest)
    staging.rmdir()
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)
