"""The one place where seconds and (sub)frame positions are converted.

A backbone emits one audio token per ``frame_s`` seconds (40 ms for Qwen2-Audio and
Qwen2.5-Omni); a head splits each token into ``subframes`` sub-frames. Everything after
the head works on the sub-frame axis, whose unit is ``frame_s / subframes`` seconds.
Sub-frame ``f`` covers ``[f * unit, (f + 1) * unit)`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_FRAME_S = 0.04
DEFAULT_SUBFRAMES = 4


@dataclass(frozen=True)
class FrameGrid:
    """Seconds <-> sub-frame conversion for one backbone + head."""

    frame_s: float = DEFAULT_FRAME_S
    """Seconds per audio token."""
    subframes: int = DEFAULT_SUBFRAMES
    """Sub-frames per audio token."""

    def __post_init__(self) -> None:
        if self.frame_s <= 0 or self.subframes < 1:
            raise ValueError(f"need frame_s > 0 and subframes >= 1, got {self.frame_s}, {self.subframes}")

    @property
    def unit_s(self) -> float:
        """Seconds per sub-frame."""
        return self.frame_s / self.subframes

    def to_seconds(self, position):
        """Continuous sub-frame position(s) -> seconds. Frame index f + 0.5 is its centre."""
        if isinstance(position, torch.Tensor):
            return position.to(torch.float64) * self.unit_s
        return np.asarray(position, dtype=np.float64) * self.unit_s if not np.isscalar(position) else float(position) * self.unit_s

    def to_index(self, seconds, num_frames: int | None = None):
        """Seconds -> the sub-frame index that contains them (clamped to [0, num_frames - 1])."""
        idx = np.floor(np.asarray(seconds, dtype=np.float64) / self.unit_s + 1e-9).astype(np.int64)
        if num_frames is not None:
            idx = np.clip(idx, 0, num_frames - 1)
        return idx

    def num_subframes(self, num_tokens: int) -> int:
        return num_tokens * self.subframes
