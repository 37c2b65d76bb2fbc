"""The pretrained tiny base (issue #21 item 1): built by the library, started from by a frame run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from framecall.models.backbone import BackboneError, resolve_model_path
from framecall.models.checkpoint import CheckpointError, read_manifest
from framecall.models.tiny import BASE_PRESETS, ensure_base
from framecall.models.tiny import verify_sums
from framecall.train.pretrain import PretrainConfig, build_base, write_sums


def backbone_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The ``backbone.*`` tensors of a full-finetune frame checkpoint's model.safetensors."""
    return {k: v for k, v in load_file(str(path / "model.safetensors")).items() if k.startswith("backbone.")}


def loaded_backbone(model: str) -> dict[str, torch.Tensor]:
    """``model`` loaded the way a training worker loads it (build_frame_model -> from_pretrained)."""
    from framecall.models.frame_model import build_frame_model

    state = build_frame_model(model, "poisson", 4).state_dict()
    return {k: v for k, v in state.items() if k.startswith("backbone.")}


def test_bad_base_names_and_configs_error_clearly():
    with pytest.raises(BackboneError, match="tiny-omni-bse.*tiny-omni-base"):
        resolve_model_path("tiny-omni-bse")
    with pytest.raises(ValueError, match="unknown base preset 'tiny-judge-base'.*tiny-qwen2-audio-base"):
        ensure_base("tiny-judge-base")
    with pytest.raises(ValueError, match="arch must be one of"):
        PretrainConfig(arch="tiny-judge")
    with pytest.raises(ValueError, match="hidden % heads"):
        PretrainConfig(hidden=100, heads=3)
    with pytest.raises(ValueError, match=r"\[min_s, max_s\]"):
        PretrainConfig(durations=[[8.0, 4.0]])
    assert set(BASE_PRESETS.values()) == {"tiny-omni", "tiny-qwen2-audio"}


def test_damaged_base_file_is_named(tmp_path):
    (tmp_path / "backbone").mkdir()
    (tmp_path / "backbone" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "manifest.json").write_text("{}")
    write_sums(tmp_path)
    verify_sums(tmp_path)  # intact: passes
    (tmp_path / "backbone" / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(CheckpointError, match=r"backbone/model.safetensors: missing or its sha256 differs"):
        verify_sums(tmp_path)
    with pytest.raises(CheckpointError, match="no SHA256SUMS"):
        verify_sums(tmp_path / "backbone")


def test_small_base_then_a_frame_run_starts_from_its_weights(ray_session, mlflow_uri, tiny_words_all, tmp_path):
    quiet = ["eval.figures=0", "train.eval_max_items=8", "mlflow.system_metrics=false",
             f"mlflow.tracking_uri={mlflow_uri}"]
    cfg = PretrainConfig(hidden=64, layers=2, heads=4, tasks=["words_all", "events"], durations=[[1.0, 3.0]],
                         num_per_source=24, splits={"train": 0.5, "val": 0.25, "test": 0.25}, max_steps=3,
                         eval_every=3, batch_size=2, num_workers=1, output=str(tmp_path / "pre"),
                         train_overrides=quiet)
    base = build_base(cfg).base_dir

    manifest = read_manifest(base)
    assert manifest.stage == "base" and manifest.global_step == 3
    assert sorted(manifest.mixture) == ["events_1-3s", "words_all_1-3s"]
    data = json.loads(manifest.base_provenance["data"])
    assert [(d["task"], d["seconds"], d["rows"]) for d in data] == [("words_all", [1.0, 3.0], 24),
                                                                   ("events", [1.0, 3.0], 24)]
    assert manifest.base_provenance["steps"] == "3" and manifest.base_provenance["seed"] == "0"
    assert json.loads(manifest.base_provenance["config"])["hidden"] == 64
    assert {"topn_nms/words_all/acc@40ms", "topn_nms/events/acc@40ms"} <= set(manifest.metrics)
    assert json.loads((base / "backbone" / "config.json").read_text())["text_config"]["hidden_size"] == 64
    verify_sums(base)

    # the base's backbone/ (loaded through from_pretrained) holds the pretraining run's trained weights
    trained = backbone_tensors(tmp_path / "pre" / "run" / "best")
    from_base = loaded_backbone(str(base))
    assert trained.keys() == from_base.keys()
    assert all(torch.equal(trained[k], from_base[k]) for k in trained)
    initial = loaded_backbone(str(tmp_path / "pre" / "init"))
    assert any(not torch.equal(initial[k], from_base[k]) for k in initial)  # pretraining moved them

    # a stopped build's checkpoint shipped as it is: same weights, evaluated, marked as packaged
    from dataclasses import replace

    from framecall.train.pretrain import package_checkpoint

    packed = package_checkpoint(replace(cfg, output=str(tmp_path / "pkg"), data_root=str(tmp_path / "pre" / "data")),
                                tmp_path / "pre" / "run" / "best").base_dir
    assert read_manifest(packed).stage == "base" and "stopped build" in read_manifest(packed).base_provenance["packaged"]
    assert "topn_nms/events/acc@40ms" in read_manifest(packed).metrics
    verify_sums(packed)
    assert all(torch.equal(v, from_base[k]) for k, v in loaded_backbone(str(packed)).items())

    # a frame run with --model <base>: at an lr of 1e-12 its step-1 backbone is still the base's
    from framecall.train.cli import train_main

    run = tmp_path / "frame"
    train_main("poisson", ["--model", str(base), "--data", str(tiny_words_all), "--max-steps", "1",
                           "--num-workers", "1", "--output", str(run), "train.lr=1e-12", "train.eval_every=1",
                           "train.batch_size=2", "mlflow.register=false", *quiet])
    assert read_manifest(run / "best").backbone == str(base)
    started = backbone_tensors(run / "best")
    assert started.keys() == from_base.keys()
    assert all(torch.allclose(started[k], from_base[k], atol=1e-6) for k in started)


def test_shipped_tiny_omni_base_loads_through_from_pretrained():
    from framecall.models.backbone import load_backbone
    from framecall.models.tiny import SHIPPED_BASES

    shipped = SHIPPED_BASES / "tiny-omni-base"
    assert resolve_model_path("tiny-omni-base") == str(shipped / "backbone")
    manifest = read_manifest(shipped)
    assert manifest.stage == "base" and manifest.model_type == "qwen2_5_omni"
    assert manifest.global_step > 0 and {"words", "words_all", "speakers", "events"} <= {
        json.loads(manifest.base_provenance["data"])[i]["task"] for i in range(8)}
    verify_sums(shipped)
    backbone = load_backbone("tiny-omni-base")
    weights = load_file(str(shipped / "backbone" / "model.safetensors"))
    assert sum(p.numel() for p in backbone.model.parameters()) == sum(w.numel() for w in weights.values())
    # transformers renames on load (model.embed_tokens -> model.language_model.embed_tokens): same tensor
    assert torch.equal(backbone.model.state_dict()["model.language_model.embed_tokens.weight"],
                       weights["model.embed_tokens.weight"])
