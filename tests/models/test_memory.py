"""Memory estimates from architecture configs, and the real-checkpoint presets they are quoted for."""

from __future__ import annotations

from pathlib import Path

import pytest

from framecall.config import build_config
from framecall.models.memory import (ARCHITECTURES, GIB, activation_bytes, build_config as arch_config,
                                     estimate_memory, memory_table, meta_model)
from framecall.models.tiny import ensure_tiny
from framecall.train.config import TrainJobConfig

ROOT = Path(__file__).resolve().parents[2]
PRESETS = {"frame_qwen2_5_omni_3b.yaml": "Qwen2.5-Omni-3B", "frame_qwen2_5_omni_7b.yaml": "Qwen2.5-Omni-7B",
           "frame_qwen2_audio_7b.yaml": "Qwen2-Audio-7B-Instruct"}


def test_parameters_counted_on_the_meta_device_match_the_loaded_tiny_model():
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    path = ensure_tiny("tiny-omni")
    loaded = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path)
    est = estimate_memory(str(path), batch=1, audio_seconds=1.0, finetune="full", dtype="float32")
    head = 128 * 4 + 4  # Linear(H=128, S=4)
    assert est.params == sum(p.numel() for p in loaded.parameters()) + head
    assert est.weights == 4 * est.params and est.optimizer == 16 * est.params


def test_lora_counts_the_language_models_attention_projections_only():
    """tiny-omni: H=128, 4 heads, 2 KV heads (head_dim 32: k, v are 128 -> 64), 3 layers, r=16:
    per layer 16 * ((128+128) + (128+64) + (128+64) + (128+128)) = 16 * 896 = 14,336; x 3 = 43,008; + head 516."""
    est = estimate_memory(str(ensure_tiny("tiny-omni")), batch=1, audio_seconds=1.0, lora_r=16)
    assert est.trainable == 43_008 + 516


def test_activations_follow_the_formula_and_checkpointing_keeps_one_layer():
    """Qwen2-Audio-7B at B=2: L = 64 + 750 = 814 (30 s of padding), A = 1500, bf16.
    One layer: 2*814*(6*4096 + 2*4096 + 3*11008)*2; kept inputs: 32*2*814*4096*2; tower: 2*1500*(6*1280+3*5120)*2."""
    config = arch_config("Qwen2-Audio-7B-Instruct")
    one = 2 * 814 * (6 * 4096 + 2 * 4096 + 3 * 11008) * 2
    tower = 2 * 1500 * (6 * 1280 + 3 * 5120) * 2
    got = activation_bytes(config.text_config, config.audio_config, 2, 814, 1500, 2, True)
    assert got == 32 * 2 * 814 * 4096 * 2 + one + tower
    assert activation_bytes(config.text_config, config.audio_config, 2, 814, 1500, 2, False) == 32 * one + tower
    est = estimate_memory("Qwen2-Audio-7B-Instruct", batch=2, audio_seconds=5.0)  # padded to 30 s all the same
    assert est.activations == got


def test_real_architectures_have_their_published_sizes():
    sizes = {name: sum(p.numel() for p in meta_model(arch_config(name)).parameters()) / 1e9 for name in ARCHITECTURES}
    assert 8.3 < sizes["Qwen2-Audio-7B-Instruct"] < 8.5  # "8.4B" on its model card
    assert 8.8 < sizes["Qwen2.5-Omni-7B"] < 9.1  # the thinker of the 10.7B model (talker, token2wav not loaded)
    assert 4.0 < sizes["Qwen2.5-Omni-3B"] < 5.0


def test_an_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="model_type 'llama'"):
        arch_config({"model_type": "llama"})


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_carry_the_papers_hyperparameters(preset):
    cfg = build_config(TrainJobConfig, ROOT / "jobs" / "configs" / preset)
    assert (cfg.model.finetune, cfg.model.dtype, cfg.model.gradient_checkpointing) == ("lora", "bfloat16", True)
    assert (cfg.train.lr, cfg.train.weight_decay) == (1e-6, 0.01)
    assert cfg.train.batch_size * cfg.ray.num_workers == 8  # effective batch
    assert cfg.train.max_steps * 8 == 3 * 8000  # 3 epochs of the 8,000-item corpus
    assert cfg.ray.use_gpu == "true" and cfg.ray.gpus_per_worker == 1
    assert Path(cfg.model.name).name == PRESETS[preset]


def test_readme_table_is_what_the_estimator_computes():
    rows = {name: estimate_memory(name, batch=2, audio_seconds=30.0) for name in PRESETS.values()}
    assert memory_table(rows) in (ROOT / "README.md").read_text()
    assert all(e.total < 40 * GIB for e in rows.values())  # each fits an 80 GB H100 with room to spare
