"""Facts about the supported backbones that other layers need without loading a model.

The data pipeline (collation) counts audio tokens with these; it imports them from here,
never the other way round: ``framecall.models`` imports nothing from ``framecall.data``.
"""

from __future__ import annotations


def qwen_audio_tokens(num_mel_frames: int) -> int:
    """Audio tokens Qwen2-Audio / Qwen2.5-Omni emit for F mel frames (conv stride 2, pool 2)."""
    after_conv = (num_mel_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1
