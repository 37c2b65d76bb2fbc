"""LoRA adapters in peft's standard layout: attach, load, merge once, and load a policy checkpoint.

An adapter directory holds ``adapter_config.json`` + ``adapter_model.safetensors`` and loads with
``peft.PeftModel.from_pretrained``: SFT/GRPO checkpoints keep theirs in ``adapter/``; a frame model's
LoRA (``finetune: lora``, kept in ``model.safetensors``) is written so by :func:`export_frame_adapter`.
Merging uses peft's ``merge_and_unload``; a merged base directory records the digests of the adapters
folded into it (``framecall_merge.json``), so merging the same adapter twice, which would add its
delta again, is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from framecall.models.backbone import QwenAudioBackbone, load_backbone
from framecall.models.checkpoint import (ADAPTER_DIR, CheckpointError, CheckpointManifest, LoraSpec, read_manifest,
                                         verify_weights)

MERGE_RECORD = "framecall_merge.json"
ADAPTER_WEIGHTS = f"{ADAPTER_DIR}/adapter_model.safetensors"


def hf_model(backbone: QwenAudioBackbone) -> torch.nn.Module:
    """The transformers model under a peft wrapper (LoRA layers live inside it, in place)."""
    model = backbone.model
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lora_config(spec: LoraSpec):
    from peft import LoraConfig

    targets = "|".join(spec.targets)
    # the language model's projections only: a bare "q_proj" would also wrap the audio encoder
    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=rf".*language_model.*\.({targets})$",
                      modules_to_save=list(spec.modules_to_save) or None)


def attach_lora(backbone: QwenAudioBackbone, spec: LoraSpec, seed: int = 0) -> None:
    """Wrap the backbone's model in a fresh peft LoRA adapter (only adapter weights train)."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    backbone.model = get_peft_model(backbone.model, lora_config(spec))
    if not any(p.requires_grad for p in backbone.model.parameters()):
        raise ValueError(f"LoRA matched no module of the language model for targets {spec.targets}")


def load_adapter_dir(backbone: QwenAudioBackbone, adapter_dir: str | Path, trainable: bool) -> None:
    """Put a saved peft adapter (adapter_config.json + adapter_model.safetensors) on the backbone."""
    from peft import PeftModel

    backbone.model = PeftModel.from_pretrained(backbone.model, str(adapter_dir), is_trainable=trainable)


def merge_adapter_dir(backbone: QwenAudioBackbone, adapter_dir: str | Path) -> None:
    """Fold a saved adapter into the base weights with peft's ``merge_and_unload`` (one merge:
    the caller records it in the manifest's ``merged_parents`` and refuses a second)."""
    load_adapter_dir(backbone, adapter_dir, trainable=False)
    backbone.model = backbone.model.merge_and_unload()


def adapter_digest(ckpt_dir: str | Path, manifest: CheckpointManifest) -> str:
    """The manifest's sha256 of the checkpoint's adapter weights; a checkpoint without one is refused."""
    if manifest.adapter is None or not (Path(ckpt_dir) / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(f"{ckpt_dir}: a {manifest.stage!r} checkpoint without an adapter "
                              f"({ADAPTER_WEIGHTS} missing); a policy must come from jobs/train_sft.py or train_grpo.py")
    return manifest.weights_sha256.get(ADAPTER_WEIGHTS, "")


def merged_digests(backbone_dir: str | Path) -> list[str]:
    record = Path(backbone_dir) / MERGE_RECORD
    return json.loads(record.read_text())["merged"] if record.is_file() else []


def merge_into_base(ckpt_dir: str | Path, output: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``output``: the checkpoint's backbone with its adapter merged (a plain HF directory
    plus the merge record). Refuses an adapter the backbone already holds merged."""
    from framecall.models.backbone import resolve_model_path

    ckpt_dir, output = Path(ckpt_dir), Path(output)
    manifest = read_manifest(ckpt_dir).check(ckpt_dir, stage=("sft", "grpo"))
    digest = adapter_digest(ckpt_dir, manifest)
    base_dir = Path(resolve_model_path(manifest.backbone))
    already = merged_digests(base_dir)
    if digest in already:
        raise CheckpointError(f"{ckpt_dir}: its adapter ({digest[:12]}...) is already merged into {base_dir}; "
                              "merging it again would add its delta twice")
    backbone = load_backbone(str(base_dir), dtype=dtype)
    merge_adapter_dir(backbone, ckpt_dir / ADAPTER_DIR)
    output.mkdir(parents=True, exist_ok=True)
    backbone.model.save_pretrained(str(output))
    backbone.tokenizer.save_pretrained(str(output))
    (output / MERGE_RECORD).write_text(json.dumps({"merged": [*already, digest], "from": str(ckpt_dir)}, indent=2))
    return output


def load_policy_checkpoint(ckpt_dir: str | Path, dtype: torch.dtype | None = None,
                           trainable: bool = False) -> tuple[QwenAudioBackbone, CheckpointManifest]:
    """An SFT or GRPO checkpoint as a generating backbone: its base with its adapter on."""
    ckpt_dir = Path(ckpt_dir)
    manifest = read_manifest(ckpt_dir).check(ckpt_dir, stage=("sft", "grpo"))
    adapter_digest(ckpt_dir, manifest)
    verify_weights(ckpt_dir, manifest)
    backbone = load_backbone(manifest.backbone, dtype=dtype)
    load_adapter_dir(backbone, ckpt_dir / ADAPTER_DIR, trainable=trainable)
    return backbone, manifest


FRAME_HEAD_WEIGHTS = "frame_head.safetensors"
FRAME_ADAPTER_RECORD = "framecall_adapter.json"
"""Beside a frame-model adapter export: the head's weights and the source checkpoint's manifest."""


def frame_lora_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``finetune: lora`` frame checkpoint's state (keys ``backbone.model.<hf key>``) -> the LoRA
    tensors keyed as in the transformers model (``<hf key>``, peft's adapter name included)."""
    prefix = "backbone.model."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and ".lora_" in k}


def export_frame_adapter(ckpt: str | Path, output: str | Path) -> Path:
    """Write a LoRA frame checkpoint's adapter in peft's layout, so ``PeftModel.from_pretrained(base,
    output)`` rebuilds its language model (base: the checkpoint's backbone, loaded with transformers).

    ``output`` holds ``adapter_config.json`` + ``adapter_model.safetensors`` (written by peft's own
    ``save_pretrained``), ``frame_head.safetensors`` (the head, ``head.*`` keys) and
    ``framecall_adapter.json`` (the source manifest: head kind, sub-frames, features, prompt order).
    The checkpoint itself is not changed: framecall keeps reading LoRA from ``model.safetensors``.
    """
    from peft import get_peft_model
    from safetensors.torch import save_file

    from framecall.models.checkpoint import WEIGHTS_HEAD_KEY, load_weights
    from framecall.models.frame_model import backbone_source
    from framecall.models.registry import resolve_checkpoint

    ckpt_dir, output = resolve_checkpoint(ckpt), Path(output)
    manifest = read_manifest(ckpt_dir).check(ckpt_dir, stage="frame", frame_head=True)
    if manifest.finetune != "lora" or manifest.lora is None:
        raise CheckpointError(f"{ckpt}: finetune is {manifest.finetune!r}; only a 'lora' checkpoint has an adapter "
                              "(jobs/export_model.py writes a standalone copy of any checkpoint)")
    if output.exists() and any(output.iterdir()):
        raise FileExistsError(f"{output} exists and is not empty")
    state = load_weights(ckpt_dir, manifest)
    backbone = load_backbone(backbone_source(manifest, ckpt_dir))
    peft_model = get_peft_model(backbone.model, lora_config(manifest.lora))
    lora = frame_lora_tensors(state)
    missing, unexpected = peft_model.base_model.model.load_state_dict(lora, strict=False)
    expected = {k for k in peft_model.base_model.model.state_dict() if ".lora_" in k}
    if unexpected or expected & set(missing):
        raise CheckpointError(f"{ckpt}: LoRA tensors do not fit the manifest's lora section "
                              f"(unexpected {unexpected[:3]}, missing {sorted(expected & set(missing))[:3]})")
    output.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(output), save_embedding_layers=False)  # only projections are adapted
    head = {k: v.contiguous() for k, v in state.items() if k.startswith("head.")}
    save_file(head, str(output / FRAME_HEAD_WEIGHTS), metadata={WEIGHTS_HEAD_KEY: manifest.head})
    record = {"checkpoint": str(ckpt), "manifest": json.loads(manifest.to_json())}
    (output / FRAME_ADAPTER_RECORD).write_text(json.dumps(record, indent=2))
    return output


def load_frame_adapter(adapter_dir: str | Path, dtype: torch.dtype | None = None):
    """An :func:`export_frame_adapter` directory as a framecall model: its base, the adapter through
    ``PeftModel.from_pretrained`` and the frame head. -> (FrameModel in eval mode, source manifest)."""
    from safetensors.torch import load_file

    from framecall.models.checkpoint import manifest_from_dict
    from framecall.models.frame_model import FrameModel

    adapter_dir = Path(adapter_dir)
    record_path = adapter_dir / FRAME_ADAPTER_RECORD
    if not record_path.is_file():
        raise CheckpointError(f"{adapter_dir}: no {FRAME_ADAPTER_RECORD} (not a framecall frame-adapter export)")
    manifest = manifest_from_dict(json.loads(record_path.read_text())["manifest"], record_path)
    backbone = load_backbone(manifest.backbone, dtype=dtype, bidirectional_audio=manifest.bidirectional_audio)
    backbone.system_prompt = manifest.system_prompt
    load_adapter_dir(backbone, adapter_dir, trainable=False)
    backbone.model = hf_model(backbone)  # LoRA layers stay in place; the backbone calls the HF modules
    model = FrameModel(backbone, manifest.head, manifest.subframes, token_output=manifest.token_output,
                       token_order=manifest.token_prompt_order)
    head = {k[len("head."):]: v for k, v in load_file(str(adapter_dir / FRAME_HEAD_WEIGHTS)).items()}
    model.head.load_state_dict(head)  # strict: a head of another shape fails here, naming the keys
    return model.eval(), manifest
