"""model.system_prompt: a system turn before every prompt, recorded in the manifest (issue #17 item 4)."""

from __future__ import annotations

import pytest
import torch

from framecall.models.backbone import load_backbone
from framecall.models.checkpoint import write_manifest
from framecall.models.frame_model import FrameModel, load_frame_model, save_weights
from framecall.prompts import SYSTEM_PROMPTS, PromptTextError, chat_turn, resolve_system_prompt
from tests_helpers import tiny_manifest


def test_resolve_names_text_and_none():
    assert resolve_system_prompt(None) is None and resolve_system_prompt("none") is None
    assert resolve_system_prompt("qwen2_audio") == "You are a helpful assistant."
    assert resolve_system_prompt("Answer briefly.") == "Answer briefly."
    with pytest.raises(PromptTextError, match="model.system_prompt"):
        resolve_system_prompt("be nice<|im_end|>")


def test_chat_turn_puts_the_system_turn_first():
    assert chat_turn("hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert chat_turn("hi", "S.") == "<|im_start|>system\nS.<|im_end|>\n" + chat_turn("hi")


def _audio_states(model: FrameModel) -> torch.Tensor:
    torch.manual_seed(0)
    batch = {"features": torch.randn(1, 128, 200), "feature_mask": torch.ones(1, 200, dtype=torch.long),
             "prompts": ["When is the first word?"]}
    with torch.no_grad():
        states, inputs = model.backbone.encode(batch)
    audio = inputs.input_ids[0] == model.backbone.audio_token_id
    return states[0, audio]  # [T_tok, H]: the audio positions


def test_the_system_turn_reaches_the_model_and_round_trips(tmp_path):
    model = FrameModel(load_backbone("tiny-omni"), "poisson").eval()
    plain = _audio_states(model)
    model.backbone.system_prompt = SYSTEM_PROMPTS["qwen2_audio"]
    assert model.backbone.prompt_text("q", 2).startswith("<|im_start|>system\nYou are a helpful assistant.")
    with_system = _audio_states(model)
    assert plain.shape == with_system.shape and not torch.allclose(plain, with_system)
    save_weights(model, tmp_path)
    write_manifest(tmp_path, tiny_manifest(system_prompt=SYSTEM_PROMPTS["qwen2_audio"]))
    loaded, manifest = load_frame_model(tmp_path)
    assert loaded.backbone.system_prompt == manifest.system_prompt == "You are a helpful assistant."
    assert torch.allclose(_audio_states(loaded.eval()), with_system, atol=1e-5)


def test_training_config_reaches_the_manifest():
    from framecall.config import ConfigError, build_config
    from framecall.train.config import TrainJobConfig
    from framecall.train.runner import frame_manifest

    provenance = {"git_sha": "x", "data_manifest_sha256": "y"}
    for overrides, want in (([], None), (["model.system_prompt=qwen2_audio"], "You are a helpful assistant.")):
        cfg = build_config(TrainJobConfig, flags={}, overrides=overrides)
        assert frame_manifest(cfg, [], "run", "file:///nowhere", provenance).system_prompt == want
    with pytest.raises(ConfigError, match="model.system_prompt"):
        build_config(TrainJobConfig, flags={}, overrides=["model.system_prompt=<|AUDIO|>"])
