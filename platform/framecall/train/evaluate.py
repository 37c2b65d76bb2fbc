"""Evaluate a frame-model checkpoint on a shard split: per decoder, per task, Table 2 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from framecall.data.collate import FrameCollator
from framecall.data.pipeline import PipelineConfig, iterate_rows_locally
from framecall.frames.units import FrameGrid
from framecall.metrics import check_pairing
from framecall.models.frame_model import load_frame_model
from framecall.train.evaluation import (DEFAULT_PAIRINGS, predict_batch, results_table, score_records,
                                        usable_decoders)


def evaluate_checkpoint(ckpt_dir: str | Path, data_dir: str | Path | Sequence[str | Path],
                        split: str | None = "test", decoders: Sequence[str] | None = None, batch_size: int = 16,
                        title: str | None = None, max_items: int | None = None, expect_head: str | None = None,
                        max_new_tokens: int = 256, pairings: Sequence[str] = DEFAULT_PAIRINGS,
                        convention: str = "framecall", device: str = "auto", dtype: str = "auto",
                        featurize: str = "worker"):
    """-> (scores {decoder: {task: summary}}, markdown table, records).

    ``ckpt_dir``: a directory or a ``models:/`` URI. ``data_dir``: one shard directory or
    several (a multi-task model's test sets); ``max_items`` applies to each. ``decoders``:
    names, "all" (every registered decoder the head supports) and/or "tokens"; None: the
    manifest's default. ``pairings`` / ``convention``: see :func:`score_records`. ``device`` / ``dtype``:
    :func:`framecall.runtime.choose_device` (auto: CUDA + bf16 where present, else CPU + fp32).
    ``featurize``: "worker" (each batch's waveforms featurized at once on the model's device) or
    "pipeline" (a log-mel per row as it is read); the same features within ~1e-6.
    """
    from framecall.runtime import choose_device

    for pairing in pairings:  # a typo fails before the model loads
        check_pairing(pairing, convention)
    plan = choose_device(device, dtype)
    model, manifest = load_frame_model(ckpt_dir, expect_head=expect_head, dtype=plan.dtype)
    model.to(plan.device)
    head = manifest.head
    decoders = usable_decoders(decoders or [manifest.default_decoder], head, manifest.token_output)
    grid = FrameGrid(manifest.frame_s, manifest.subframes)
    collate = FrameCollator(grid=grid, tokens_for_frames=model.backbone.tokens_for_frames,
                            feature_params=manifest.features, device=plan.device)
    pipe = PipelineConfig(features=manifest.features, batch_size=batch_size, featurize=featurize)
    hop_s = manifest.features.hop_length / manifest.features.sample_rate
    records: list[dict] = []
    dirs = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    with torch.no_grad():
        for one_dir in dirs:
            mine: list[dict] = []
            for table in iterate_rows_locally(one_dir, pipe, split=split):
                if table.num_rows == 0:
                    continue
                batch = collate(table.to_pydict())
                mine.extend(predict_batch(model, batch, decoders, grid, head, manifest.nms_min_separation,
                                          max_new_tokens=max_new_tokens, hop_s=hop_s))
                if max_items is not None and len(mine) >= max_items:
                    break
            records.extend(mine)
    if not records:
        raise ValueError(f"{data_dir}: no rows in split {split!r}")
    scores = score_records(records, decoders, pairings, convention)
    table = results_table(scores, title or f"{Path(ckpt_dir).name}: {split} split, {len(records)} items",
                          pairings, convention)
    return scores, table, records


