"""Checkpoints on storage a cluster can share (#20 item 3): ray.storage_path as a path or URI, a pyarrow
filesystem from Python; resume, verification and best/ read through pyarrow, not the local disk.

The filesystem other than the default is a SubTreeFileSystem over a tmp dir: not a LocalFileSystem, so
every read goes through the pyarrow-filesystem path that s3:// or gs:// storage takes."""

import json
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from framecall.models.checkpoint import MANIFEST, TRAINING_STATE, read_manifest
from framecall.train.checkpoints import (
    COMPLETE, StoragePath, file_digests, open_storage, pick_checkpoint, replace_dir, resume_candidates,
)
from framecall.train.runner import fit, latest_checkpoint
from tests_helpers import make_checkpoint, train_config


def _subtree(root: Path) -> pafs.SubTreeFileSystem:
    root.mkdir(parents=True, exist_ok=True)
    return pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())


def _complete(path: Path, step: int) -> Path:
    """A tiny checkpoint at ``step`` with a training state and its completion marker (plain files)."""
    make_checkpoint(path, ["words_all"])
    (path / TRAINING_STATE).write_bytes(b"state")
    manifest = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(json.dumps({**manifest, "global_step": step}))
    (path / COMPLETE).write_text(json.dumps({"global_step": step, "sha256": file_digests(path)}))
    return path


def test_storage_path_forms_and_errors_name_the_field(tmp_path):
    default = open_storage("", tmp_path / "out" / "ray")
    assert default.local and default.path == str(tmp_path / "out" / "ray") and (tmp_path / "out" / "ray").is_dir()
    uri = open_storage(f"file://{tmp_path}/shared/ckpt", tmp_path / "unused")
    assert uri.local and uri.path == str(tmp_path / "shared" / "ckpt") and Path(uri.path).is_dir()
    custom = open_storage("ckpt", tmp_path / "unused", _subtree(tmp_path / "store"))
    assert not custom.local and str(custom) == "subtree:ckpt" and (tmp_path / "store" / "ckpt").is_dir()
    with pytest.raises(ValueError, match=r"ray.storage_path='nosuch://bucket/x': .*Unrecognized filesystem"):
        open_storage("nosuch://bucket/x", tmp_path)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match=r"ray.storage_path='.*a_file/ckpt': not usable as checkpoint storage"):
        open_storage(str(tmp_path / "a_file" / "ckpt"), tmp_path)
    with pytest.raises(ValueError, match="ray.storage_path='': .*needs the path on it"):
        open_storage("", tmp_path, _subtree(tmp_path / "store"))


def test_candidates_fallback_and_best_copy_through_a_pyarrow_filesystem(tmp_path, monkeypatch):
    store = tmp_path / "store"
    _complete(store / "ckpt" / "run-1" / "checkpoint_a", 2)
    _complete(store / "ckpt" / "run-1" / "checkpoint_b", 4)
    make_checkpoint(store / "ckpt" / "run-1" / "checkpoint_c", ["words_all"])  # no marker: still being copied
    monkeypatch.setenv("FRAMECALL_CACHE", str(tmp_path / "cache"))  # local copies (set after the tiny model is made)
    storage = StoragePath(_subtree(store), "ckpt")
    candidates = resume_candidates(storage)
    assert [str(c) for c in candidates] == ["subtree:ckpt/run-1/checkpoint_b", "subtree:ckpt/run-1/checkpoint_a"]
    weights = store / "ckpt" / "run-1" / "checkpoint_b" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated after its marker was written
    lines: list[str] = []
    pick = pick_checkpoint(candidates, log=lines.append)
    assert pick is not None and pick.manifest.global_step == 2 and pick.source == candidates[1]
    # the refusal names the file on storage, not the local copy it was verified on
    assert pick.skipped == [f"subtree:ckpt/run-1/checkpoint_b/model.safetensors: sha256 differs from {COMPLETE} "
                            "(truncated or replaced)"]
    assert "falling back to subtree:ckpt/run-1/checkpoint_a (step 2)" in lines[-1]
    assert pick.path.is_relative_to(tmp_path / "cache") and read_manifest(pick.path).global_step == 2
    assert [p.name for p in (tmp_path / "cache" / "checkpoints").iterdir()] == [pick.path.name]  # broken one dropped
    assert pick_checkpoint([candidates[1]], log=lambda _: None).path == pick.path  # downloaded once
    best = tmp_path / "out" / "best"
    replace_dir(candidates[1], best, ignore=shutil.ignore_patterns(TRAINING_STATE, COMPLETE))
    assert sorted(p.name for p in best.iterdir()) == ["manifest.json", "model.safetensors"]
    assert read_manifest(best).global_step == 2


@pytest.mark.slow
def test_training_checkpoints_on_a_pyarrow_filesystem_then_resume(ray_session, tiny_words_all, mlflow_uri,
                                                                   tmp_path):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "store"
    fs = _subtree(store)
    res = fit(train_config(tmp_path, tiny_words_all, mlflow_uri, steps=2, **{"ray.storage_path": "ckpt"}),
              storage_filesystem=fs)
    out = Path(res.output)
    assert not (out / "ray").exists()  # nothing on the default local storage
    markers = sorted(store.glob(f"ckpt/run-*/checkpoint_*/{COMPLETE}"))
    assert [json.loads(m.read_text())["global_step"] for m in markers] == [2]
    best = read_manifest(res.best_checkpoint)  # the same manifest format as local storage gives
    assert res.best_checkpoint == out / "best" and best.global_step == 2 and best.mlflow_run_id == res.run_id
    assert (out / "best" / "model.safetensors").is_file() and not (out / "best" / TRAINING_STATE).exists()
    assert read_manifest(markers[0].parent) == best

    resumed = fit(train_config(tmp_path, tiny_words_all, mlflow_uri, steps=4, resume="true",
                               **{"ray.storage_path": "ckpt"}), storage_filesystem=fs)
    assert resumed.run_id == res.run_id
    client = MlflowClient(mlflow_uri)
    run = client.get_run(res.run_id)
    # the workers restored step 2 from the storage (a restore from scratch says "scratch" here)
    assert run.data.params["restart_1.from_step"] == "2", run.data.tags.get("framecall.restart_1")
    assert [m.step for m in client.get_metric_history(res.run_id, "val/topn_nms_acc20ms")] == [2, 4]
    assert latest_checkpoint(out, StoragePath(fs, "ckpt")) is not None
    assert read_manifest(latest_checkpoint(out, StoragePath(fs, "ckpt"))).global_step == 4
    assert read_manifest(resumed.best_checkpoint).global_step in (2, 4) and not (out / "ray").exists()
