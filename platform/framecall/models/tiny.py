"""Tiny presets of the real architectures: random init, saved once, loaded like a checkpoint.

``tiny-omni``: a Qwen2.5-Omni *thinker* (audio encoder + Qwen2 decoder with M-RoPE; the
vision tower is present because the class builds one, at minimum size).
``tiny-qwen2-audio``: Qwen2-Audio (Whisper-style encoder, 30 s windows, Qwen2 decoder).
``tiny-judge``: a text-only Qwen2 causal LM, the offline stand-in for an LLM judge.

:func:`ensure_tiny` writes ``config.json``, weights and the offline tokenizer with
``save_pretrained`` into the framecall cache, then every consumer loads that directory
through ``from_pretrained``, the same path a real checkpoint takes.

``tiny-omni-base`` / ``tiny-qwen2-audio-base`` (:func:`ensure_base`): the tiny backbones *pretrained* on
the synthetic multi-task mixture by :func:`framecall.train.pretrain.build_base`. The shipped one
(``models/bases/<name>/``, sha256-checked) is used when present; otherwise it is built on first use and cached.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from framecall.cache import cache_dir

TINY_PRESETS = ("tiny-omni", "tiny-qwen2-audio", "tiny-judge")
BASE_PRESETS = {"tiny-omni-base": "tiny-omni", "tiny-qwen2-audio-base": "tiny-qwen2-audio"}
"""Pretrained base preset -> the architecture it is built from."""
SHIPPED_BASES = Path(__file__).resolve().parent / "bases"
_VERSION = "v2"  # bump when a preset or how its tokenizer is built changes (v2: answer tags are text tokens)


def _text_kwargs(vocab: int, hidden: int, layers: int, heads: int) -> dict:
    return dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=4096,
                tie_word_embeddings=True)


def build_tiny(name: str, tokenizer, hidden: int = 128, layers: int = 3, heads: int = 4, seed: int = 0):
    """A randomly initialised tiny model of preset ``name`` (not saved)."""
    import torch

    torch.manual_seed(seed)
    ids = tokenizer.convert_tokens_to_ids
    vocab = len(tokenizer)
    if name == "tiny-omni":
        from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

        head_dim = hidden // heads
        # M-RoPE sections (temporal, height, width) must sum to half the head dimension
        t = head_dim // 2 - 2 * (head_dim // 6)
        text = _text_kwargs(vocab, hidden, layers, heads) | {
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [t, head_dim // 6, head_dim // 6]},
        }
        config = Qwen2_5OmniThinkerConfig(  # type: ignore[call-arg]  # vision_start_token_id: read from kwargs (DESIGN.md)
            audio_config=dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=256,
                              d_model=128, output_dim=hidden, n_window=100, max_source_positions=1500),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                               fullatt_block_indexes=[0]),
            text_config=text,
            audio_token_index=ids("<|AUDIO|>"), image_token_index=ids("<|IMAGE|>"),
            video_token_index=ids("<|VIDEO|>"), audio_start_token_id=ids("<|audio_bos|>"),
            audio_end_token_id=ids("<|audio_eos|>"), vision_start_token_id=ids("<|vision_bos|>"),
            user_token_id=ids("<|im_start|>"),
        )
        return Qwen2_5OmniThinkerForConditionalGeneration(config)
    if name == "tiny-qwen2-audio":
        from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

        config = Qwen2AudioConfig(
            audio_config=dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=256,
                              d_model=128, max_source_positions=1500),
            text_config=dict(model_type="qwen2", **_text_kwargs(vocab, hidden, layers, heads)),
            audio_token_index=ids("<|AUDIO|>"),
        )
        return Qwen2AudioForConditionalGeneration(config)
    if name == "tiny-judge":  # a text-only Qwen2 causal LM: the offline stand-in for an LLM judge
        from transformers import Qwen2Config, Qwen2ForCausalLM

        return Qwen2ForCausalLM(Qwen2Config(**_text_kwargs(vocab, hidden, 2, heads)))
    raise ValueError(f"unknown tiny preset {name!r}; valid: {list(TINY_PRESETS)}")


def ensure_tiny(name: str) -> Path:
    """Directory of preset ``name`` in the cache, built on first use (atomically)."""
    if name not in TINY_PRESETS:
        raise ValueError(f"unknown tiny preset {name!r}; valid: {list(TINY_PRESETS)}")
    from framecall.models.tokenizer import build_tokenizer, fingerprint

    # the key changes with the preset version and with the tokenizer's inputs: a tiny model cached with
    # another tokenizer is never reused
    target = cache_dir("models") / f"{name}-{_VERSION}-tok{fingerprint()}"
    if (target / "config.json").is_file():
        return target

    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        tokenizer = build_tokenizer()
        model = build_tiny(name, tokenizer)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        os.rename(tmp, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def base_build_command(name: str, output: str | Path) -> str:
    return f"python jobs/pretrain_base.py --arch {BASE_PRESETS[name]} --output {output}"


SUMS_FILE = "SHA256SUMS"
_BASE_BUILDERS: list[Callable[[str, Path], Path]] = []
"""The builder of a missing base preset, registered by :mod:`framecall.train.pretrain` (models never import
train/): ``(preset name, run directory) -> the built base directory``."""


def register_base_builder(build: Callable[[str, Path], Path]) -> None:
    _BASE_BUILDERS[:] = [build]


def verify_sums(base_dir: Path) -> None:
    """Refuse a base whose files differ from its ``SHA256SUMS`` (naming the file)."""
    import hashlib

    from framecall.models.checkpoint import CheckpointError

    sums = base_dir / SUMS_FILE
    if not sums.is_file():
        raise CheckpointError(f"{base_dir}: no {SUMS_FILE}; not a framecall base")
    for line in sums.read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        path = base_dir / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise CheckpointError(f"{path}: missing or its sha256 differs from {sums} (a damaged base; rebuild it "
                                  "with jobs/pretrain_base.py)")


def ensure_base(name: str) -> Path:
    """The Hugging Face directory (``<base>/backbone``) of pretrained base preset ``name``.

    The shipped base under ``models/bases/<name>`` if present (its SHA256SUMS checked), else the cached
    build, else built now by the registered builder (the training jobs register
    :func:`framecall.train.pretrain.build_preset`: tens of minutes on 2 CPU cores, announced with the
    command that does the same); with no builder registered, an error naming that command."""
    if name not in BASE_PRESETS:
        raise ValueError(f"unknown base preset {name!r}; valid: {list(BASE_PRESETS)}")
    from framecall.models.tokenizer import fingerprint

    run = cache_dir("models") / f"{name}-{_VERSION}-tok{fingerprint()}"
    for base in (SHIPPED_BASES / name, run / "base"):
        if (base / "backbone" / "config.json").is_file():
            verify_sums(base)
            return base / "backbone"
    if not _BASE_BUILDERS:
        raise FileNotFoundError(f"base preset {name!r} is neither shipped ({SHIPPED_BASES / name}) nor cached "
                                f"({run / 'base'}); build it: {base_build_command(name, run)}")
    print(f"[framecall] base preset {name!r} is neither shipped ({SHIPPED_BASES / name}) nor cached: BUILDING IT "
          f"NOW (multi-task pretraining, tens of minutes on 2 CPU cores). The same by hand: "
          f"{base_build_command(name, run)}", file=sys.stderr, flush=True)
    return _BASE_BUILDERS[0](name, run) / "backbone"
