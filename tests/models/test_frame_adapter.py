"""A frame model's LoRA exported in peft's layout loads with ``PeftModel.from_pretrained`` onto the
plain transformers base and computes what framecall's own loading of the checkpoint computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from framecall.models.adapters import FRAME_ADAPTER_RECORD, FRAME_HEAD_WEIGHTS, load_frame_adapter
from framecall.models.checkpoint import LoraSpec, write_manifest
from framecall.models.frame_model import build_frame_model, load_frame_model, save_weights
from tests_helpers import make_checkpoint, speech_clip, tiny_manifest


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory):
    """A finetune=lora tiny-omni checkpoint whose LoRA B matrices are non-zero (peft starts them at 0,
    which would make any base + any adapter agree)."""
    torch.manual_seed(1)
    model = build_frame_model("tiny-omni", "poisson", 4, finetune="lora", lora_r=4, lora_alpha=8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name or name.startswith("head."):
                p.normal_(0, 0.3)
    path = tmp_path_factory.mktemp("lora_ckpt")
    save_weights(model, path)
    write_manifest(path, tiny_manifest(finetune="lora", lora=LoraSpec(r=4, alpha=8), tasks=["words_all"]))
    return path


@pytest.fixture(scope="module")
def batch():
    from framecall.audio.features import FeatureParams, log_mel
    from framecall.data.collate import pad_features
    from framecall.models.backbone import load_backbone

    samples, _ = speech_clip("the cat sat", seed=2)
    tokens_for_frames = load_backbone("tiny-omni").tokens_for_frames
    features, feature_mask, token_mask, _ = pad_features([log_mel(samples, FeatureParams())], tokens_for_frames)
    return {"features": features, "feature_mask": feature_mask, "token_mask": token_mask,
            "prompts": ["When does each word start?"]}


def test_peft_loads_the_export_onto_the_plain_base_with_the_same_outputs(lora_checkpoint, batch, tmp_path):
    from peft import PeftModel
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from framecall.client import main

    assert main(["export-adapter", "--checkpoint", str(lora_checkpoint), "--output", str(tmp_path / "adapter")]) == 0
    out = tmp_path / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", FRAME_HEAD_WEIGHTS,
            FRAME_ADAPTER_RECORD} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8)

    ours, _ = load_frame_model(lora_checkpoint)
    inputs = ours.backbone.build_inputs(batch["prompts"], batch["features"], batch["feature_mask"])
    hf_inputs = dict(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                     input_features=inputs.input_features, feature_attention_mask=inputs.feature_attention_mask)
    base = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(config["base_model_name_or_path"])
    with torch.no_grad():
        plain = base(**hf_inputs, output_hidden_states=True)
        theirs = PeftModel.from_pretrained(base, str(out)).eval()(**hf_inputs, output_hidden_states=True)
        mine = ours.backbone.model(**hf_inputs, output_hidden_states=True)
    torch.testing.assert_close(theirs.logits, mine.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(theirs.hidden_states[-1], mine.hidden_states[-1], atol=1e-5, rtol=1e-4)
    assert (plain.logits - mine.logits).abs().max() > 1e-2  # the adapter changes the outputs

    reloaded, manifest = load_frame_adapter(out)  # the export back into framecall: same frame scores
    with torch.no_grad():
        want, _ = ours(batch)
        got, _ = reloaded(batch)
    assert manifest.finetune == "lora" and manifest.head == "poisson"
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)


def test_framecall_export_adapter_command_names_what_it_refuses(lora_checkpoint, tmp_path, capsys):
    from framecall.client import main

    full = make_checkpoint(tmp_path / "full", ["words_all"])
    assert main(["export-adapter", "--checkpoint", str(full), "--output", str(tmp_path / "o")]) == 2
    assert f"{full}: finetune is 'full'" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    assert main(["export-adapter", "--checkpoint", str(lora_checkpoint), "--output", str(tmp_path / "busy")]) == 2
    assert "busy exists and is not empty" in capsys.readouterr().err
