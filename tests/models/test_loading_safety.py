"""Loading refuses what it should (#16): files outside the allowed roots, bad manifests by file and
field, truncated safetensors by path, a swapped head field, non-atomic or unverified registry caches."""

import json
import os
import shutil
from dataclasses import replace

import pytest

from framecall.models.backbone import BackboneError, resolve_model_path
from framecall.models.checkpoint import (MANIFEST, WEIGHTS, CheckpointError, OutsideRootsError, check_roots,
                                         load_weights, manifest_from_dict, read_manifest, to_dict, write_manifest)
from framecall.models.frame_model import load_frame_model
from framecall.models.registry import COMPLETE, RegistryError, cache_entry, register_checkpoint, resolve_checkpoint
from framecall.models.tiny import ensure_tiny
from tests_helpers import make_checkpoint, tiny_manifest


@pytest.fixture(scope="module")
def ckpt_src(tmp_path_factory):
    """One tiny Poisson checkpoint; tests copy it (building one costs a model load)."""
    return make_checkpoint(tmp_path_factory.mktemp("src") / "ckpt", ["words"])


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _with_backbone(ckpt, backbone):
    write_manifest(ckpt, replace(read_manifest(ckpt), backbone=str(backbone)))
    return ckpt


# --- allowed roots ------------------------------------------------------------------------------

def test_backbone_outside_the_roots_is_refused_absolute_or_climbing(tmp_path, ckpt_src):
    allowed = tmp_path / "runs"
    outside = _copy(ensure_tiny("tiny-omni"), tmp_path / "elsewhere" / "model")
    ckpt = _with_backbone(_copy(ckpt_src, allowed / "ckpt"), outside)
    with pytest.raises(OutsideRootsError, match=r"manifest.json: field backbone '.*elsewhere/model': .* outside the allowed"):
        load_frame_model(ckpt, allowed_roots=[str(allowed)])
    _with_backbone(ckpt, "../../elsewhere/model")  # relative, climbing out of the checkpoint
    with pytest.raises(OutsideRootsError, match=r"field backbone '\.\./\.\./elsewhere/model': .* resolves to .*/elsewhere/model, outside"):
        load_frame_model(ckpt, allowed_roots=[str(allowed)])
    # a climbing name that does not even exist is still a path, and still refused
    _with_backbone(ckpt, "../../nowhere")
    with pytest.raises(OutsideRootsError, match="field backbone"):
        check_roots(ckpt, read_manifest(ckpt), [allowed])
    # the same backbone under an allowed root loads
    _with_backbone(ckpt, outside)
    model, manifest = load_frame_model(ckpt, allowed_roots=[str(allowed), str(outside.parent)])
    assert manifest.backbone == str(outside) and model.head_type == "poisson"


def test_symlinks_inside_a_checkpoint_are_resolved_before_the_roots_check(tmp_path, ckpt_src):
    allowed = tmp_path / "runs"
    ckpt = _copy(ckpt_src, allowed / "ckpt")
    secret = tmp_path / "secret.safetensors"
    shutil.move(ckpt / WEIGHTS, secret)
    os.symlink(secret, ckpt / WEIGHTS)
    with pytest.raises(OutsideRootsError, match=r"symlink .*model.safetensors resolves to .*secret.safetensors"):
        load_frame_model(ckpt, allowed_roots=[str(allowed)])
    # a directory symlink pointing out is refused too, even if no manifest field names it
    os.symlink(tmp_path, ckpt / "extra")
    with pytest.raises(OutsideRootsError, match="extra"):
        check_roots(ckpt, read_manifest(ckpt), [allowed])
    # the checkpoint directory itself reached through a symlink: its target is what is checked
    os.symlink(ckpt, tmp_path / "link-to-ckpt")
    with pytest.raises(OutsideRootsError, match="checkpoint .*link-to-ckpt resolves to"):
        check_roots(tmp_path / "link-to-ckpt", read_manifest(ckpt), [tmp_path / "nothing-here"])
    (ckpt / "extra").unlink()
    check_roots(ckpt, read_manifest(ckpt), [allowed, tmp_path])  # all inside once tmp_path is allowed


def test_model_uri_is_resolved_then_checked(tmp_path, ckpt_src, mlflow_uri, monkeypatch):
    """A registered checkpoint whose manifest names a backbone outside the roots is refused after download."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("FRAMECALL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    outside = _copy(ensure_tiny("tiny-omni"), tmp_path / "elsewhere" / "model")
    ckpt = _with_backbone(_copy(ckpt_src, tmp_path / "c"), outside)
    version = _register(MlflowClient(mlflow_uri), mlflow_uri, ckpt, tmp_path, "roots-test-model")
    with pytest.raises(OutsideRootsError, match="field backbone"):
        load_frame_model(f"models:/roots-test-model/{version}", allowed_roots=[str(tmp_path / "runs")])
    # the download itself lies outside the configured roots, but it counts as allowed: only the backbone failed
    _, manifest = load_frame_model(f"models:/roots-test-model/{version}",
                                   allowed_roots=[str(tmp_path / "runs"), str(outside)])
    assert manifest.backbone == str(outside)


def _register(client, mlflow_uri, ckpt, tmp_path, name):
    exp = client.get_experiment_by_name(name) or client.get_experiment(
        client.create_experiment(name, artifact_location=(tmp_path / "art").as_uri()))
    run = client.create_run(exp.experiment_id)
    client.log_artifacts(run.info.run_id, str(ckpt), "checkpoint")
    return register_checkpoint(mlflow_uri, run.info.run_id, name)


# --- bad manifests, truncated files, swapped heads -------------------------------------------------

@pytest.mark.parametrize("field,value,message", [
    ("head", "zzz", r"head: 'zzz' is not one of \['poisson', 'binary', 'tokens'\]"),
    ("head", 5, r"head: '5' is not one of"),
    ("model_type", "gpt2", "model_type: 'gpt2' is not one of"),
    ("finetune", "most", "finetune: 'most' is not one of"),
    ("prompt_order", "sideways", "prompt_order: 'sideways' is not one of"),
    ("weights_sha256", {"../../etc/x.safetensors": "00"}, "weights_sha256: '../../etc/x.safetensors' must be a path inside"),
    ("weights_sha256", {"/abs/x.safetensors": "00"}, "weights_sha256: '/abs/x.safetensors' must be a path inside"),
    ("adapter", "/tmp/adapter", "adapter: '/tmp/adapter' must be a path inside"),
    ("backbone", None, "backbone: null is not allowed"),
])
def test_bad_manifest_fields_are_named_with_the_file(tmp_path, field, value, message):
    data = {**to_dict(tiny_manifest()), field: value}
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"{tmp_path}/manifest.json: .*{message}"):
        read_manifest(tmp_path)


def test_v1_manifest_with_a_malformed_lora_section_is_a_checkpoint_error():
    data = {**to_dict(tiny_manifest()), "format_version": 1, "lora": "r=4"}
    with pytest.raises(CheckpointError, match=r"^old/manifest.json: lora: expected a mapping"):
        manifest_from_dict(data, "old/manifest.json")


def test_manifest_nested_too_deep_is_a_checkpoint_error(tmp_path):
    (tmp_path / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="manifest.json: not valid JSON"):
        read_manifest(tmp_path)


def test_truncated_weights_without_a_digest_name_their_path(tmp_path, ckpt_src):
    ckpt = _copy(ckpt_src, tmp_path / "ckpt")
    manifest = replace(read_manifest(ckpt), weights_sha256={})  # digests are what catch it otherwise
    (ckpt / WEIGHTS).write_bytes((ckpt / WEIGHTS).read_bytes()[:4000])
    with pytest.raises(CheckpointError, match=rf"^{ckpt}/model.safetensors: unreadable safetensors file"):
        load_weights(ckpt, manifest)


def test_truncated_or_missing_backbone_safetensors_name_the_file(tmp_path):
    model = _copy(ensure_tiny("tiny-omni"), tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(BackboneError, match=rf"^{weights}: unreadable safetensors file \(Error while deserializing"):
        resolve_model_path(str(model))
    weights.rename(model / "pytorch_model.bin")  # pickle weights are never loaded
    with pytest.raises(BackboneError, match=rf"model path {model} has no \*.safetensors weights"):
        resolve_model_path(str(model))


def test_a_swapped_head_field_is_detected_from_the_weights_metadata(tmp_path, ckpt_src):
    """Poisson and binary heads hold identical tensors; the head kind saved in model.safetensors' metadata
    (covered by the digest) tells them apart. Editing manifest.json leaves the weights digest valid."""
    ckpt = _copy(ckpt_src, tmp_path / "ckpt")
    data = json.loads((ckpt / MANIFEST).read_text())
    (ckpt / MANIFEST).write_text(json.dumps({**data, "head": "binary", "loss": "binary"}))
    with pytest.raises(CheckpointError, match=r"model.safetensors: weights were saved for a 'poisson' head, "
                                              r"but the manifest's head field says 'binary'"):
        load_frame_model(ckpt)
    assert set(load_weights(ckpt_src, read_manifest(ckpt_src)))  # the untouched one loads


# --- the registry download cache -------------------------------------------------------------------

def test_registry_cache_is_atomic_and_verified(tmp_path, ckpt_src, mlflow_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("FRAMECALL_CACHE", str(tmp_path / "cache"))
    client = MlflowClient(mlflow_uri)
    ref = f"models:/cache-test-model/{_register(client, mlflow_uri, ckpt_src, tmp_path, 'cache-test-model')}"
    entry = cache_entry(ref, mlflow_uri)
    # a download killed after manifest.json arrived (the old cache's failure): never reused
    entry.mkdir(parents=True)
    shutil.copy(ckpt_src / MANIFEST, entry / MANIFEST)
    resolved = resolve_checkpoint(ref, mlflow_uri)
    assert (resolved / WEIGHTS).is_file() and (entry / COMPLETE).is_file()
    assert load_weights(resolved, read_manifest(resolved))
    assert not list(entry.parent.glob(".*staging-*")) and not list(entry.parent.glob(".*retired-*"))
    # a complete entry of a numbered version is reused as is
    mtime = (entry / COMPLETE).stat().st_mtime_ns
    assert resolve_checkpoint(ref, mlflow_uri) == resolved and (entry / COMPLETE).stat().st_mtime_ns == mtime


def test_registry_refuses_a_download_whose_digests_fail(tmp_path, ckpt_src, mlflow_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("FRAMECALL_CACHE", str(tmp_path / "cache"))
    bad = _copy(ckpt_src, tmp_path / "bad")
    (bad / WEIGHTS).write_bytes((bad / WEIGHTS).read_bytes()[:-100])
    ref = f"models:/corrupt-model/{_register(MlflowClient(mlflow_uri), mlflow_uri, bad, tmp_path, 'corrupt-model')}"
    with pytest.raises(RegistryError, match=rf"^{ref}: downloaded checkpoint refused: .*model.safetensors: sha256"):
        resolve_checkpoint(ref, mlflow_uri)
    entry = cache_entry(ref, mlflow_uri)
    assert not entry.exists() and not list(entry.parent.glob(".*staging-*"))


def test_serve_engine_holds_every_checkpoint_file_to_the_roots(tmp_path, ckpt_src):
    """Serve admits the directory, and the engine it builds checks the files the checkpoint names."""
    from framecall.serving import ServeSettings, engine_for

    allowed = tmp_path / "runs"
    ckpt = _with_backbone(_copy(ckpt_src, allowed / "ckpt"),
                          _copy(ensure_tiny("tiny-omni"), tmp_path / "elsewhere" / "model"))
    with pytest.raises(OutsideRootsError, match="field backbone"):
        engine_for(ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(allowed)]))
    engine = engine_for(ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(allowed), str(tmp_path / "elsewhere")]))
    assert engine.info["name"] == "ckpt"
