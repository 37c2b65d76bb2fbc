"""Collate featurized rows into padded tensors; seconds become sub-frame counts here, once.

Input is what :mod:`framecall.data.pipeline` yields (a dict of numpy columns, as
``iter_torch_batches(collate_fn=...)`` passes it): log-mels as raw float32 bytes (``featurize="pipeline"``),
or waveforms as raw float32 bytes (``featurize="worker"``), which the collator pads and featurizes here,
the whole batch at once, with :func:`~framecall.audio.features.log_mel_batch` on ``device``. Either way
the same tensors come out (features equal within ~1e-6; labels and masks identical)::

    features        float32 [B, M, F_max]   log-mel, zero padded on the right (on ``device``)
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

from framecall.audio.features import FeatureParams, log_mel_batch, pad_waveforms
from framecall.data.pipeline import features_from_bytes, waveforms_from_bytes
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


def featurize_waveforms(clips_per_row: list[list[np.ndarray]], params: FeatureParams,
                        tokens_for_frames: Callable[[int], int] = qwen_audio_tokens, device: Any = None,
                        sources: list[str] | None = None):
    """Each row's clips (float32 [N_c] at ``params.sample_rate``) -> what :func:`pad_features` returns for
    their log-mels: (features [B, M, F_max] on ``device``, feature_mask [B, F_max], token_mask [B, T_tok],
    audio tokens per item; masks on the CPU). Every clip of the batch is padded and featurized in one
    :func:`log_mel_batch` call; a row's clips are then joined in time, as the pipeline joins them."""
    flat = [clip for clips in clips_per_row for clip in clips]
    if not flat:
        raise ValueError("cannot collate an empty batch")
    sources = sources or [f"batch row {b}" for b in range(len(clips_per_row))]
    names = [f"{src} clip {i}" for src, clips in zip(sources, clips_per_row) for i in range(len(clips))]
    samples, lengths = pad_waveforms(flat, device)
    clip_feats, clip_mask = log_mel_batch(samples, lengths, params, names)  # [C, M, F_c], [C, F_c]
    clip_frames = clip_mask.sum(dim=1).tolist()
    if len(flat) == len(clips_per_row):  # one clip per row: the clip batch is the row batch
        features, row_frames = clip_feats, clip_frames
    else:
        row_frames, starts, c = [], [], 0
        for clips in clips_per_row:
            starts.append(c)
            row_frames.append(sum(clip_frames[c:c + len(clips)]))
            c += len(clips)
        features = clip_feats.new_zeros(len(clips_per_row), clip_feats.shape[1], max(row_frames))
        for b, (start, clips) in enumerate(zip(starts, clips_per_row)):
            at = 0
            for k in range(start, start + len(clips)):
                features[b, :, at:at + clip_frames[k]] = clip_feats[k, :, : clip_frames[k]]
                at += clip_frames[k]
    feature_mask = torch.arange(features.shape[2])[None, :] < torch.tensor(row_frames)[:, None]
    token_mask, tokens = token_mask_for(row_frames, tokens_for_frames)
    return features, feature_mask, token_mask, tokens


@dataclass
class FrameCollator(NumpyBatchCollateFn):
    """collate_fn for frame-head training (a NumpyBatchCollateFn: Ray Data hands it numpy
    columns; plain functions are deprecated there). ``grid`` fixes the sub-frame unit;
    ``feature_params`` and ``device`` are used for waveform batches (the backbone's parameters, and the
    device the model runs on: the training worker's)."""

    grid: FrameGrid = field(default_factory=FrameGrid)
    tokens_for_frames: Callable[[int], int] = qwen_audio_tokens
    feature_params: FeatureParams = field(default_factory=FeatureParams)
    device: Any = None
    """Where waveform batches are featurized (None: the CPU)."""

    def _features(self, batch: Mapping[str, Any]):
        """(features, feature_mask, token_mask, tokens per item) from either kind of batch."""
        if "waveform" in batch:
            clips = [waveforms_from_bytes(w, n) for w, n in zip(_as_list(batch["waveform"]),
                                                                 _as_list(batch["clip_samples"]))]
            sources = [f"id={str(x)!r}" for x in _as_list(batch["id"])]
            return featurize_waveforms(clips, self.feature_params, self.tokens_for_frames, self.device, sources)
        feats = [
            features_from_bytes(f, m, n)
            for f, m, n in zip(_as_list(batch["features"]), _as_list(batch["num_mels"]), _as_list(batch["num_frames"]))
        ]
        return pad_features(feats, self.tokens_for_frames)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        features, feature_mask, token_mask, tokens = self._features(batch)
        bsz, t_max, s = len(tokens), token_mask.shape[1], self.grid.subframes
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
