"""Training checkpoints that are complete or ignored: a marker written last, verified before use.

A training checkpoint (see :mod:`framecall.models.checkpoint` for the files) is *complete* when
``complete.json`` is present and every file it lists has the listed sha256. The marker is written
by :func:`upload_complete` (Ray Train's ``checkpoint_upload_fn``) after Ray has copied the whole
directory to storage, and atomically (temporary name, then a rename), so a checkpoint still being
copied, or one whose copy died half way, has no marker and is never resumed from.

:func:`resume_candidates` lists the complete checkpoints of an output directory, newest first;
:func:`pick_checkpoint` verifies them in that order and falls back past broken ones, saying which
file was wrong. :func:`replace_dir` publishes a directory (``best/``) atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from framecall.models.checkpoint import (
    MANIFEST, TRAINING_STATE, CheckpointError, CheckpointManifest, file_sha256, read_manifest, verify_weights,
)

COMPLETE = "complete.json"
"""The completion marker: {"global_step": int, "sha256": {relative path: hex digest}}."""


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


def resume_candidates(root: Path) -> list[Path]:
    """Checkpoint directories under ``root`` that carry a completion marker, highest step first
    (ties: the newest marker first). Directories without one are not candidates at all."""
    dirs = [m.parent for m in root.glob(f"**/{COMPLETE}")]
    return sorted(dirs, key=lambda d: (_step_of(d), (d / COMPLETE).stat().st_mtime), reverse=True)


@dataclass
class Pick:
    """The checkpoint chosen, its manifest, and why newer ones were passed over."""

    path: Path
    manifest: CheckpointManifest
    skipped: list[str]
    """One line per newer candidate refused: its error, naming the file."""


def pick_checkpoint(candidates: list[Path], accept: Callable[[Path, CheckpointManifest], object] | None = None,
                    log: Callable[[str], None] = print) -> Pick | None:
    """The first of ``candidates`` that verifies (and that ``accept`` does not refuse by raising
    CheckpointError); every refusal is logged. None when no candidate verifies."""
    skipped = []
    for path in candidates:
        try:
            manifest = verify_complete(path)
            if accept is not None:
                accept(path, manifest)
        except (CheckpointError, OSError) as e:
            skipped.append(str(e))
            log(f"[framecall] not resuming from {path}: {e}")
            continue
        if skipped:
            log(f"[framecall] falling back to {path} (step {manifest.global_step})")
        return Pick(path, manifest, skipped)
    return None


def replace_dir(src: Path, dest: Path, ignore: Callable | None = None) -> None:
    """Copy ``src`` to ``dest`` so that ``dest`` is at every moment the old or the new copy in full:
    copy beside it, swap by renames, then delete the old one."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    shutil.copytree(src, staging / "d", ignore=ignore)
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent)) / "d"
        os.rename(dest, old)
    os.rename(staging / "d", dest)
    staging.rmdir()
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)
