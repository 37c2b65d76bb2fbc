"""GPU memory of one training worker, estimated from a backbone's architecture config (no weights needed).

Parameters are counted exactly by building the model on PyTorch's ``meta`` device (shapes, no storage).
The rest is arithmetic (the formula is in BENCHMARKS.md; every term is a field of :class:`MemoryEstimate`):

    weights      = P_all * bytes(dtype)                       (every worker holds the whole model: DDP)
    optimizer    = P_train * (4 + 4 + 4 + 4)                  (fp32 trainable copy, gradient, AdamW m and v)
    activations  = n_layers * B * L * H * bytes(dtype)        (gradient checkpointing keeps each layer's input)
                 + B * L * (6H + 2KV + 3I) * bytes(dtype)     (one layer recomputed in backward, SDPA: no L x L)
                 + B * A * (6d + 3F) * bytes(dtype)           (the frozen audio tower: one layer at a time)
    overhead     = 1 GiB                                      (CUDA context, allocator fragmentation)

with B the per-worker batch, L the sequence length (prompt + audio tokens, 25 per second), H / KV / I the
language model's hidden / key-value / MLP widths, A the audio tower's positions (50 per second) and d / F its
width and MLP width. Without gradient checkpointing every layer keeps its activations (n_layers times the
recomputed term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from framecall.models.spec import qwen_audio_tokens

GIB = 1024**3
OVERHEAD_BYTES = GIB
MEL_FRAMES_PER_S = 100

# Architecture configs of the real checkpoints (their config.json, thinker part for Qwen2.5-Omni), so the
# estimate needs no download; estimate_from_config also takes a checkpoint directory's own config.
_OMNI_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[7, 15, 23, 31])
_WHISPER_LARGE = dict(num_mel_bins=128, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                      d_model=1280, max_source_positions=1500)
_MROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "Qwen2.5-Omni-3B": {"model_type": "qwen2_5_omni_thinker",
                        "text_config": dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008,
                                            num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                                            tie_word_embeddings=True, rope_parameters=_MROPE),
                        "audio_config": {**_WHISPER_LARGE, "output_dim": 2048, "n_window": 100},
                        "vision_config": {**_OMNI_VISION, "out_hidden_size": 2048}},
    "Qwen2.5-Omni-7B": {"model_type": "qwen2_5_omni_thinker",
                        "text_config": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                                            num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                                            tie_word_embeddings=False, rope_parameters=_MROPE),
                        "audio_config": {**_WHISPER_LARGE, "output_dim": 3584, "n_window": 100},
                        "vision_config": {**_OMNI_VISION, "out_hidden_size": 3584}},
    "Qwen2-Audio-7B-Instruct": {"model_type": "qwen2_audio",
                                "text_config": dict(model_type="qwen2", vocab_size=156032, hidden_size=4096,
                                                    intermediate_size=11008, num_hidden_layers=32,
                                                    num_attention_heads=32, num_key_value_heads=32,
                                                    tie_word_embeddings=False),
                                "audio_config": _WHISPER_LARGE},
}
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per training worker (one GPU), by term; ``total`` is their sum."""

    params: int
    trainable: int
    weights: int
    optimizer: int
    activations: int
    overhead: int = OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.activations + self.overhead


def build_config(name_or_fields: str | dict[str, Any]):
    """A transformers config: a name in ARCHITECTURES, a dict of its form, or a checkpoint directory."""
    from transformers import AutoConfig, Qwen2_5OmniThinkerConfig, Qwen2AudioConfig

    if isinstance(name_or_fields, str) and name_or_fields not in ARCHITECTURES:
        config = AutoConfig.from_pretrained(name_or_fields)
        return getattr(config, "thinker_config", config)  # a full Omni checkpoint: the thinker is trained
    fields = dict(ARCHITECTURES[name_or_fields] if isinstance(name_or_fields, str) else name_or_fields)
    kind = fields.pop("model_type")
    classes = {"qwen2_5_omni_thinker": Qwen2_5OmniThinkerConfig, "qwen2_audio": Qwen2AudioConfig}
    if kind not in classes:
        raise ValueError(f"model_type {kind!r}: no memory estimate for it; valid: {sorted(classes)}")
    return classes[kind](**fields)


def meta_model(config) -> torch.nn.Module:
    """The model a config describes, on the meta device (no memory, exact shapes)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration, Qwen2AudioForConditionalGeneration

    cls = (Qwen2AudioForConditionalGeneration if config.model_type == "qwen2_audio"
           else Qwen2_5OmniThinkerForConditionalGeneration)
    with torch.device("meta"):
        return cls(config)


def lora_parameters(model: torch.nn.Module, targets: list[str], r: int) -> int:
    """LoRA's A [r, in] and B [out, r] on every targeted Linear of the language model (not the towers)."""
    total = 0
    for name, module in model.named_modules():
        in_tower = "audio_tower" in name or "visual" in name
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets and not in_tower:
            total += r * (module.in_features + module.out_features)
    return total


def activation_bytes(text, audio, batch: int, seq_len: int, audio_positions: int, width: int,
                     gradient_checkpointing: bool) -> int:
    """The activation terms of the module docstring (``width``: bytes per element)."""
    hidden, inter, layers = text.hidden_size, text.intermediate_size, text.num_hidden_layers
    kv = text.num_key_value_heads * (hidden // text.num_attention_heads)
    one_layer = batch * seq_len * (6 * hidden + 2 * kv + 3 * inter) * width
    kept = layers * batch * seq_len * hidden * width + one_layer if gradient_checkpointing else layers * one_layer
    tower = batch * audio_positions * (6 * audio.d_model + 3 * audio.encoder_ffn_dim) * width
    return kept + tower


def estimate_memory(arch: str | dict[str, Any], batch: int, audio_seconds: float, prompt_tokens: int = 64,
                    finetune: str = "lora", lora_r: int = 16, lora_targets: list[str] | None = None,
                    dtype: str = "bfloat16", gradient_checkpointing: bool = True, subframes: int = 4) -> MemoryEstimate:
    """Per-GPU memory of a frame-head training worker: ``batch`` items of ``audio_seconds`` each."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype {dtype!r}: valid {sorted(DTYPE_BYTES)}")
    config = build_config(arch)
    model = meta_model(config)
    text, audio = config.text_config, config.audio_config
    head = text.hidden_size * subframes + subframes  # the frame head: Linear(H, S)
    params = sum(p.numel() for p in model.parameters()) + head
    targets = lora_targets or ["q_proj", "k_proj", "v_proj", "o_proj"]
    trainable = {"lora": lora_parameters(model, targets, lora_r) + head, "head": head, "full": params}[finetune]
    mel = int(round(audio_seconds * MEL_FRAMES_PER_S))
    if config.model_type == "qwen2_audio":
        mel = max(mel, 3000)  # Qwen2-Audio pads every clip to 30 s
    seq_len = prompt_tokens + qwen_audio_tokens(mel)
    width = DTYPE_BYTES[dtype]
    activations = activation_bytes(text, audio, batch, seq_len, (mel + 1) // 2, width, gradient_checkpointing)
    return MemoryEstimate(params=params, trainable=trainable, weights=params * width, optimizer=trainable * 16,
                          activations=activations)


def memory_table(rows: dict[str, MemoryEstimate]) -> str:
    """Markdown: one row per preset, GiB per term."""
    lines = ["| preset | parameters | trainable | weights GiB | optimizer GiB | activations GiB | total GiB/GPU |",
             "|---|---|---|---|---|---|---|"]
    for name, e in rows.items():
        lines.append(f"| {name} | {e.params / 1e9:.2f} B | {e.trainable / 1e6:.1f} M | {e.weights / GIB:.1f} | "
                     f"{e.optimizer / GIB:.2f} | {e.activations / GIB:.1f} | {e.total / GIB:.1f} |")
    return "\n".join(lines)
