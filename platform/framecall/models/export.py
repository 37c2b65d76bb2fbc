"""Standalone exports: a checkpoint with its LoRA adapters merged and the backbone saved inside."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from framecall.models.checkpoint import write_manifest
from framecall.models.frame_model import load_frame_model, save_weights


def merge_lora_(model) -> int:
    """Fold every LoRA adapter into its base weight and put the plain layer back. -> count."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
            merged += 1
    return merged


def export_standalone(ckpt: str | Path, output: str | Path) -> Path:
    """Write ``ckpt`` as a self-contained checkpoint: LoRA merged, the backbone saved inside.

    ``output/backbone/`` is a plain Hugging Face checkpoint (config, weights, tokenizer; loads
    with ``from_pretrained``); ``output/model.safetensors`` holds the frame head; the manifest
    names ``backbone`` relative to the directory, so the export can be moved or copied.
    """
    model, manifest = load_frame_model(ckpt)
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise FileExistsError(f"{output} exists and is not empty")
    output.mkdir(parents=True, exist_ok=True)
    merged = merge_lora_(model.backbone.model) if manifest.finetune == "lora" else 0
    model.backbone.model.save_pretrained(str(output / "backbone"))
    model.backbone.tokenizer.save_pretrained(str(output / "backbone"))
    model.finetune = "head"  # only the frame head lives outside backbone/
    save_weights(model, output)
    exported = replace(manifest, backbone="backbone", finetune="head", lora=None,
                       exported_from={"checkpoint": str(ckpt), "backbone": manifest.backbone,
                                      "finetune": manifest.finetune, "lora_layers_merged": merged})
    write_manifest(output, exported)
    return output
