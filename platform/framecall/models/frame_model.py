"""A backbone plus a frame head, its fine-tuning mode, and how both are saved and loaded.

The checkpoint format (manifest + weight files) is :mod:`framecall.models.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from framecall.frames.heads import make_head
from framecall.models.backbone import QwenAudioBackbone, load_backbone
from framecall.models.checkpoint import (WEIGHTS, WEIGHTS_HEAD_KEY, CheckpointError, CheckpointManifest, LoraSpec,
                                         check_roots, load_weights, read_manifest)
from framecall.models.registry import is_model_uri, resolve_checkpoint

__all__ = ["FrameModel", "apply_finetune", "build_frame_model", "load_frame_model", "save_weights",
           "CheckpointError", "WEIGHTS"]


class FrameModel(nn.Module):
    """backbone (audio LM) -> frame head and/or its own LM head (token answers).

    ``head``: "poisson" | "binary" (a frame head) or "tokens" (the token baseline: no frame
    head, the LM is trained on the JSON answer text). ``token_output`` adds the LM loss to
    a frame model (the interpolated loss); ``token_order`` is the prompt order of the token
    answers.

    ``forward(batch)`` -> (scores [B, T], mask [B, T]) of the frame head;
    ``forward(batch, mode="train")`` -> dict with whatever this model trains on: "scores" and
    "mask" (frame head), "token_loss" (scalar). One forward pass serves both when the token
    prompt puts the question first (the frame head needs that order), else two.
    """

    def __init__(self, backbone: QwenAudioBackbone, head: str, subframes: int = 4, token_output: bool = False,
                 token_order: str = "audio_first", head_bias: float | None = None,
                 head_weight_init: str = "scaled_normal") -> None:
        super().__init__()
        self.backbone = backbone
        self.head_type = head
        self.subframes = subframes
        self.head = None if head == "tokens" else make_head(head, backbone.hidden_size, subframes, head_bias,
                                                             head_weight_init)
        self.token_output = token_output or head == "tokens"
        self.token_order = token_order
        self.finetune = "full"

    def forward(self, batch: dict, mode: str = "frame"):
        if mode == "frame":
            if self.head is None:
                raise CheckpointError("this is a token model (no frame head): use generate_answers()")
            states, token_mask = self.backbone(batch)  # [B, T_tok, H], [B, T_tok]
            return self.head(states, token_mask)  # [B, T_tok * S] each
        if mode != "train":
            raise ValueError(f"unknown forward mode {mode!r}")
        out: dict[str, torch.Tensor] = {}
        t_max = int(batch["token_mask"].shape[1])
        if self.head is not None and self.token_output and self.token_order == "question_first":
            hidden, inputs = self.backbone.encode(batch, "question_first", batch["target_texts"])
            out["scores"], out["mask"] = self.head(*self.backbone.audio_states(hidden, inputs.input_ids, t_max))
            out["token_loss"] = self.backbone.token_loss(hidden, inputs.labels)
            return out
        if self.head is not None:
            out["scores"], out["mask"] = self.head(*self.backbone(batch, "question_first"))
        if self.token_output:
            hidden, inputs = self.backbone.encode(batch, self.token_order, batch["target_texts"])
            out["token_loss"] = self.backbone.token_loss(hidden, inputs.labels)
        return out

    def generate_answers(self, batch: dict, max_new_tokens: int = 256, min_new_tokens: int = 0) -> list[str]:
        if not self.token_output:
            raise CheckpointError("this model has no token output (trained with a frame loss only)")
        return self.backbone.generate(batch, self.token_order, max_new_tokens, min_new_tokens)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        sd = self.state_dict()
        if self.finetune == "full":
            keep = sd
        elif self.finetune == "lora":
            keep = {k: v for k, v in sd.items() if "lora_" in k or k.startswith("head.")}
        else:
            keep = {k: v for k, v in sd.items() if k.startswith("head.")}
        out, seen = {}, set()
        for k, v in keep.items():
            if v.data_ptr() in seen:  # tied weights (embeddings = LM head): saved once, restored by the tie
                continue
            seen.add(v.data_ptr())
            out[k] = v.detach().contiguous().cpu()
        return out


def apply_finetune(model: FrameModel, mode: str, lora_r: int = 16, lora_alpha: int = 32,
                   lora_targets: list[str] | None = None) -> FrameModel:
    """full: train everything; head: freeze the backbone; lora: peft LoRA on the language
    model's projections only (a bare ``q_proj`` pattern would also wrap the audio tower)."""
    model.finetune = mode
    if mode == "full":
        return model
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    if mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        targets = "|".join(lora_targets or ["q_proj", "k_proj", "v_proj", "o_proj"])
        config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                            target_modules=rf".*language_model.*\.({targets})$")
        inject_adapter_in_model(config, model.backbone.model)
        wrapped = [n for n, _ in model.backbone.model.named_modules() if n.endswith("lora_A")]
        if not wrapped:
            raise ValueError(f"LoRA matched no module of the language model for targets {lora_targets}")
        if any("audio" in n or "visual" in n for n in wrapped):
            raise AssertionError("LoRA wrapped an encoder module; targets must stay in the language model")
    return model


def save_weights(model: FrameModel, ckpt_dir: Path) -> None:
    """model.safetensors with the head kind in its metadata (checked against the manifest on load)."""
    save_file(model.trainable_state_dict(), str(ckpt_dir / WEIGHTS), metadata={WEIGHTS_HEAD_KEY: model.head_type})


def build_frame_model(model_name: str, head: str, subframes: int, finetune: str = "full",
                      dtype: torch.dtype | None = None, token_output: bool = False,
                      token_order: str = "audio_first", head_bias: float | None = None,
                      head_weight_init: str = "scaled_normal", bidirectional_audio: bool = False,
                      attn_implementation: str = "auto", system_prompt: str | None = None,
                      **lora) -> FrameModel:
    """``system_prompt``: the resolved text of a system turn (``prompts.resolve_system_prompt``), or None."""
    backbone = load_backbone(model_name, dtype=dtype, bidirectional_audio=bidirectional_audio,
                             attn_implementation=attn_implementation)
    backbone.system_prompt = system_prompt
    model = FrameModel(backbone, head, subframes, token_output=token_output, token_order=token_order,
                       head_bias=head_bias, head_weight_init=head_weight_init)
    return apply_finetune(model, finetune, **lora)


def backbone_source(manifest: CheckpointManifest, ckpt_dir: Path) -> str:
    """The manifest's backbone; a relative directory (a merged export) lives inside the checkpoint."""
    name = manifest.backbone
    inside = ckpt_dir / name
    if not Path(name).is_absolute() and (inside / "config.json").is_file():
        return str(inside)
    return name


def load_frame_model(ckpt_dir: str | Path, expect_head: str | None = None, dtype: torch.dtype | None = None,
                     allowed_roots: list[str] | None = None) -> tuple[FrameModel, CheckpointManifest]:
    """Rebuild the model a checkpoint describes and load its weights (safetensors only, digests checked).

    ``ckpt_dir``: a directory, or an MLflow URI (``models:/name/version``, ``runs:/id/checkpoint``)
    resolved through the tracking server in ``MLFLOW_TRACKING_URI``. ``allowed_roots``: every file
    the checkpoint names (directory, symlinks in it, a local backbone) must resolve under one of
    these (a downloaded model URI's own directory counts as allowed); None: no restriction.
    """
    ref = ckpt_dir
    ckpt_dir = resolve_checkpoint(ckpt_dir)
    manifest = read_manifest(ckpt_dir).check(ckpt_dir, head=expect_head, stage=("frame", "base"))
    if allowed_roots is not None:
        check_roots(ckpt_dir, manifest, [*allowed_roots, *([ckpt_dir] if is_model_uri(ref) else [])])
    lora = manifest.lora or LoraSpec()
    model = build_frame_model(backbone_source(manifest, ckpt_dir), manifest.head, manifest.subframes,
                              manifest.finetune, dtype=dtype, token_output=manifest.token_output,
                              token_order=manifest.token_prompt_order, lora_r=lora.r, lora_alpha=lora.alpha,
                              lora_targets=lora.targets, bidirectional_audio=manifest.bidirectional_audio,
                              system_prompt=manifest.system_prompt)
    state = load_weights(ckpt_dir, manifest)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise CheckpointError(f"{ckpt_dir}: weights not in the model: {unexpected[:5]}")
    absent = sorted(set(model.trainable_state_dict()) & set(missing))
    if absent:
        raise CheckpointError(f"{ckpt_dir}: weights missing from the checkpoint: {absent[:5]}")
    model.eval()
    return model, manifest
