"""Completion markers, verification with fallback, atomic best/ (no Ray: the files alone)."""

import json
import os

import pytest

from framecall.models.checkpoint import TRAINING_STATE, CheckpointError
from framecall.train.checkpoints import (
    COMPLETE, file_digests, pick_checkpoint, replace_dir, resume_candidates, verify_complete,
)
from tests_helpers import make_checkpoint


def _complete(path, step):
    """A tiny checkpoint at ``step`` with a training state and its completion marker."""
    make_checkpoint(path, ["words_all"])
    (path / TRAINING_STATE).write_bytes(b"state")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "global_step": step}))
    (path / COMPLETE).write_text(json.dumps({"global_step": step, "sha256": file_digests(path)}))
    return path


def test_candidates_are_marked_checkpoints_newest_step_first(tmp_path):
    root = tmp_path / "ray"
    _complete(root / "run-1" / "checkpoint_a", 2)
    _complete(root / "run-2" / "checkpoint_b", 6)
    _complete(root / "run-1" / "checkpoint_c", 4)
    unmarked = make_checkpoint(root / "run-2" / "checkpoint_d", ["words_all"])  # still being copied
    assert [p.name for p in resume_candidates(root)] == ["checkpoint_b", "checkpoint_c", "checkpoint_a"]
    with pytest.raises(CheckpointError, match=f"{unmarked}: no {COMPLETE}"):
        verify_complete(unmarked)


def test_broken_latest_falls_back_naming_the_file(tmp_path):
    root = tmp_path / "ray"
    _complete(root / "r" / "old", 2)
    new = _complete(root / "r" / "new", 4)
    weights = new / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated after the marker was written
    lines = []
    pick = pick_checkpoint(resume_candidates(root), log=lines.append)
    assert pick is not None and pick.path.name == "old" and pick.manifest.global_step == 2
    assert len(pick.skipped) == 1 and str(weights) in pick.skipped[0] and "truncated" in pick.skipped[0]
    assert any("falling back" in line and "old" in line for line in lines)


def test_missing_training_state_is_not_complete(tmp_path):
    ckpt = _complete(tmp_path / "c", 3)
    os.remove(ckpt / TRAINING_STATE)
    with pytest.raises(CheckpointError, match=f"{ckpt / TRAINING_STATE}: missing"):
        verify_complete(ckpt)
    assert pick_checkpoint([ckpt], log=lambda _: None) is None


def test_a_marker_without_training_state_is_refused(tmp_path):
    ckpt = _complete(tmp_path / "c", 3)
    (ckpt / COMPLETE).write_text(json.dumps({"global_step": 3, "sha256": {"manifest.json": "0" * 64}}))
    with pytest.raises(CheckpointError, match=f"{ckpt / TRAINING_STATE}: training state not in"):
        verify_complete(ckpt)


def test_accept_refusal_falls_back(tmp_path):
    root = tmp_path / "ray"
    _complete(root / "a", 2)
    _complete(root / "b", 4)

    def only_step_2(path, manifest):
        if manifest.global_step != 2:
            raise CheckpointError(f"{path}: another run")

    pick = pick_checkpoint(resume_candidates(root), accept=only_step_2, log=lambda _: None)
    assert pick.path.name == "a" and pick.skipped == [f"{root / 'b'}: another run"]


def test_replace_dir_swaps_whole_copies(tmp_path):
    src1, src2, dest = tmp_path / "s1", tmp_path / "s2", tmp_path / "out" / "best"
    for src, text in ((src1, "one"), (src2, "two")):
        src.mkdir()
        (src / "w.txt").write_text(text)
        (src / TRAINING_STATE).write_text("x")
    replace_dir(src1, dest)
    assert (dest / "w.txt").read_text() == "one"
    import shutil

    replace_dir(src2, dest, ignore=shutil.ignore_patterns(TRAINING_STATE))
    assert (dest / "w.txt").read_text() == "two" and not (dest / TRAINING_STATE).exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["best"]  # no staging or old copy left
