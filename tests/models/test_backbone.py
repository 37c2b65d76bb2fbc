"""Backbone adapters on the tiny presets of the real architectures."""

import pyarrow as pa
import pytest
import torch

from framecall.audio.features import FeatureParams
from framecall.data.collate import FrameCollator
from framecall.data.pipeline import PipelineConfig, featurize_batch
from framecall.data.synthetic import SynthConfig, generate
from framecall.models.backbone import BackboneError, load_backbone, resolve_model_path
from framecall.models.checkpoint import CheckpointError, read_manifest, write_manifest
from framecall.models.frame_model import FrameModel, apply_finetune, load_frame_model, save_weights
from tests_helpers import tiny_manifest


@pytest.fixture(scope="module")
def rows():
    return list(generate(SynthConfig(task="words", num=3, seed=2, max_seconds=3.0)))


def _batch(rows, backbone, prompts=None):
    table = featurize_batch(pa.Table.from_pylist(rows), PipelineConfig(features=FeatureParams()))
    batch = FrameCollator(tokens_for_frames=backbone.tokens_for_frames)(table.to_pydict())
    if prompts:
        batch["prompts"] = prompts
    return batch


@pytest.mark.parametrize("name,model_type", [("tiny-omni", "qwen2_5_omni"), ("tiny-qwen2-audio", "qwen2_audio")])
def test_audio_states_shape_and_mask(rows, name, model_type):
    bb = load_backbone(name)
    assert bb.model_type == model_type and bb.frame_s == 0.04
    assert bb.feature_params.pad_to_seconds == (30.0 if model_type == "qwen2_audio" else None)
    batch = _batch(rows, bb)
    states, mask = bb(batch)
    assert states.shape == (3, batch["token_mask"].shape[1], bb.hidden_size)
    assert torch.equal(mask, batch["token_mask"])
    # one token per 40 ms: a 3 s clip has 75 audio tokens
    for n, dur in zip(mask.sum(1).tolist(), [r["duration_s"] for r in rows]):
        assert abs(n - dur / 0.04) <= 1.5
    assert torch.isfinite(states[mask]).all()


def test_question_before_audio_conditions_audio_states(rows):
    """Causal decoder: audio states see the question only if it comes first."""
    bb = load_backbone("tiny-omni").eval()
    batch = _batch(rows[:1], bb)
    with torch.no_grad():
        a, _ = bb(dict(batch, prompts=["When does the 1st occurrence of the word 'much' occur?"]))
        b, _ = bb(dict(batch, prompts=["When does the 1st occurrence of the word 'time' occur?"]))
        c, _ = bb(dict(batch, prompts=["When does the 1st occurrence of the word 'much' occur?"]), order="audio_first")
        d, _ = bb(dict(batch, prompts=["When does the 1st occurrence of the word 'time' occur?"]), order="audio_first")
    assert (a - b).abs().max() > 1e-4
    assert torch.allclose(c, d)


def test_lora_wraps_only_the_language_model():
    bb = load_backbone("tiny-omni")
    model = apply_finetune(FrameModel(bb, "poisson"), "lora", lora_r=4, lora_alpha=8)
    wrapped = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert wrapped and all("language_model" in n for n in wrapped)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("head.") for n in trainable)


def test_unknown_models_are_refused(tmp_path):
    with pytest.raises(BackboneError, match="unknown model 'tiny-llama'"):
        resolve_model_path("tiny-llama")
    with pytest.raises(BackboneError, match="has no config.json"):
        resolve_model_path(str(tmp_path))


def test_checkpoint_roundtrip_and_head_mismatch(rows, tmp_path):
    bb = load_backbone("tiny-omni")
    model = FrameModel(bb, "poisson").eval()
    with torch.no_grad():
        model.head.proj.bias.add_(0.5)  # make it differ from a fresh init
    save_weights(model, tmp_path)
    write_manifest(tmp_path, tiny_manifest())
    loaded, manifest = load_frame_model(tmp_path)
    batch = _batch(rows, bb)
    with torch.no_grad():
        assert torch.allclose(model(batch)[0], loaded(batch)[0], atol=1e-6)
    assert read_manifest(tmp_path).format_version == 2
    with pytest.raises(CheckpointError, match="has a 'poisson' head, but a 'binary' head was asked for"):
        load_frame_model(tmp_path, expect_head="binary")
    with pytest.raises(CheckpointError, match="no manifest.json"):
        load_frame_model(tmp_path / "nothing")


def test_lora_checkpoint_roundtrip(rows, tmp_path):
    """A LoRA checkpoint stores adapters + head only and reloads to the same outputs."""
    bb = load_backbone("tiny-omni")
    model = apply_finetune(FrameModel(bb, "poisson"), "lora", lora_r=4, lora_alpha=8).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # LoRA B starts at zero: make the adapters matter
    save_weights(model, tmp_path)
    write_manifest(tmp_path, tiny_manifest(finetune="lora", lora={"r": 4, "alpha": 8}))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "model.safetensors"))
    assert saved and all("lora_" in k or k.startswith("head.") for k in saved)
    loaded, _ = load_frame_model(tmp_path)
    batch = _batch(rows, bb)
    with torch.no_grad():
        assert torch.allclose(model(batch)[0], loaded(batch)[0], atol=1e-5)
