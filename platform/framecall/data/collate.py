"""Collate featurized rows into padded tensors; seconds become sub-frame counts here, once.

Input is what :mod:`framecall.data.pipeline` yields (a dict of numpy columns, as
``iter_torch_batches(collate_fn=...)`` passes it; features as raw float32 bytes). Output tensors::

    features        float32 [B, M, F_max]   log-mel, zero padded on the right
    feature_mask    bool    [B, F_max]
    token_mask      bool    [B, T_tok]      audio tokens of the backbone (40 ms each)
    event_counts    float32 [B, T_tok * S]  events per sub-frame (the frame-loss target)
    subframe_mask   bool    [B, T_tok * S]
    num_events      int64   [B]
plus the untouched python lists ``ids``, ``prompts``, ``target_texts``, ``event_times_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from framecall.data.pipeline import features_from_bytes
from framecall.frames.units import FrameGrid
from framecall.models.spec import qwen_audio_tokens


def _as_list(column: Any) -> list:
    if isinstance(column, np.ndarray) and column.dtype != object:
        return list(column)
    return list(column)


def token_mask_for(num_frames: list[int], tokens_for_frames: Callable[[int], int] = qwen_audio_tokens):
    """Mel frames per item -> (token_mask [B, T_tok] bool, audio tokens per item)."""
    tokens = [tokens_for_frames(n) for n in num_frames]
    token_mask = torch.arange(max(tokens))[None, :] < torch.tensor(tokens)[:, None]
    return token_mask, tokens


def pad_features(feats: list[np.ndarray], tokens_for_frames: Callable[[int], int] = qwen_audio_tokens):
    """Log-mels [M, F_b] per item -> (features [B, M, F_max], feature_mask [B, F_max],
    token_mask [B, T_tok], audio tokens per item)."""
    if not feats:
        raise ValueError("cannot collate an empty batch")
    bsz, mels = len(feats), feats[0].shape[0]
    f_max = max(f.shape[1] for f in feats)
    features = torch.zeros(bsz, mels, f_max)
    feature_mask = torch.zeros(bsz, f_max, dtype=torch.bool)
    token_mask, tokens = token_mask_for([f.shape[1] for f in feats], tokens_for_frames)
    for b, f in enumerate(feats):
        features[b, :, : f.shape[1]] = torch.from_numpy(np.array(f, dtype=np.float32))  # Arrow buffers are read-only
        feature_mask[b, : f.shape[1]] = True
    return features, feature_mask, token_mask, tokens


@dataclass
class FrameCollator(NumpyBatchCollateFn):
    """collate_fn for frame-head training (a NumpyBatchCollateFn: Ray Data hands it numpy
    columns; plain functions are deprecated there). ``grid`` fixes the sub-frame unit."""

    grid: FrameGrid = field(default_factory=FrameGrid)
    tokens_for_frames: Callable[[int], int] = qwen_audio_tokens

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        feats = [
            features_from_bytes(f, m, n)
            for f, m, n in zip(_as_list(batch["features"]), _as_list(batch["num_mels"]), _as_list(batch["num_frames"]))
        ]
        features, feature_mask, token_mask, tokens = pad_features(feats, self.tokens_for_frames)
        bsz, t_max, s = len(feats), token_mask.shape[1], self.grid.subframes
        counts = torch.zeros(bsz, t_max * s)
        sub_mask = torch.zeros(bsz, t_max * s, dtype=torch.bool)
        times_list = [np.asarray(t, dtype=np.float64).reshape(-1) for t in _as_list(batch["event_times_s"])]
        for b, (n_tok, times) in enumerate(zip(tokens, times_list)):
            sub_mask[b, : n_tok * s] = True
            if times.size:
                idx = self.grid.to_index(times, num_frames=n_tok * s)
                counts[b].index_add_(0, torch.from_numpy(idx), torch.ones(idx.size))
        return {
            "features": features,
            "feature_mask": feature_mask,
            "token_mask": token_mask,
            "event_counts": counts,
            "subframe_mask": sub_mask,
            "num_events": torch.tensor([t.size for t in times_list], dtype=torch.int64),
            "ids": [str(x) for x in _as_list(batch["id"])],
            "prompts": [str(x) for x in _as_list(batch["prompt"])],
            "target_texts": [str(x) for x in _as_list(batch["target_text"])],
            "tasks": [str(x) for x in _as_list(batch["task"])],
            "event_times_s": [t.tolist() for t in times_list],
        }
