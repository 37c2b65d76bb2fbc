"""Multi-clip items for SFT and GRPO: from PolyAudio shards to prompt tensors.

An *item* is a plain dict that travels to rollout actors through the object store:
``{"id", "prompt", "clips": [audio bytes, ...], "target_text", "judge": {...}}`` where ``judge``
is what :mod:`framecall.polyaudio.judges` and the rewards read (task, answer type, answer).
Audio stays compressed until an engine or learner featurizes it, on its own device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from framecall.models.backbone import QwenAudioBackbone

ITEM_COLUMNS = ["id", "task", "split", "prompt", "target_text", "clips", "meta"]


class DataSplitError(ValueError):
    """A shard directory without the asked split or task."""


def check_split(data_dir: str | Path, split: str, tasks: Mapping[str, float] | None = None) -> dict[str, int]:
    """Rows per task of ``split`` in ``data_dir`` (from its manifest); a missing split or task is an error."""
    from framecall.data.shards import read_manifest

    counts = read_manifest(data_dir).get("counts", {})
    per_task = {task: by_split[split] for task, by_split in counts.items() if by_split.get(split)}
    if not per_task:
        present = sorted({s for by_split in counts.values() for s in by_split})
        raise DataSplitError(f"{data_dir}: no rows in split {split!r}; splits present: {present}")
    unknown = sorted(set(tasks or {}) - set(per_task))
    if unknown:
        raise DataSplitError(f"{data_dir}: data.task_weights names task(s) {unknown} with no {split!r} rows; "
                             f"tasks present: {sorted(per_task)}")
    return per_task


def row_to_item(row: Mapping[str, Any]) -> dict[str, Any]:
    meta = json.loads(row["meta"]) if isinstance(row["meta"], str) else dict(row["meta"])
    clips = list(row["clips"])
    if not clips:
        raise ValueError(f"row {row['id']}: a multi-audio item without clips")
    return {"id": str(row["id"]), "prompt": str(row["prompt"]), "target_text": str(row["target_text"]),
            "clips": [bytes(c["audio"]) for c in clips],
            "judge": {"id": str(row["id"]), "task": meta["task"], "question": meta["question"],
                      "reference": meta["reference"], "answer_type": meta["answer_type"], "answer": meta["answer"]}}


def batch_to_items(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Ray Data numpy batch (columns -> arrays) -> items."""
    n = len(batch["id"])
    return [row_to_item({k: batch[k][i] for k in ITEM_COLUMNS if k in batch}) for i in range(n)]


def read_items(data_dir: str | Path, split: str, task_weights: Mapping[str, float] | None = None,
               seed: int = 0):
    """A Ray Dataset of the split's rows; with ``task_weights`` (task -> weight), tasks drawn
    ``round(N * w / sum w)`` times per epoch (repeated when a task has fewer rows)."""
    import ray.data

    from framecall.data.shards import list_shards

    per_task = check_split(data_dir, split, task_weights)
    files = [str(p) for p in list_shards(data_dir)]
    # the split filter is an expression Ray Data pushes down into the Parquet scan
    ds = ray.data.read_parquet(files, columns=ITEM_COLUMNS).filter(expr=f"split == '{split}'")
    if not task_weights:
        return ds.random_shuffle(seed=seed)
    total, wsum = sum(per_task.values()), sum(task_weights.values())
    parts = []
    for task, weight in task_weights.items():
        want = max(1, round(total * weight / wsum))
        part = ds.filter(expr=f"task == '{task}'")
        copies = -(-want // per_task[task])
        parts.append((part.union(*[part] * (copies - 1)) if copies > 1 else part).limit(want))
    return parts[0].union(*parts[1:]).random_shuffle(seed=seed)


def featurize_clips(backbone: QwenAudioBackbone, item: Mapping[str, Any]) -> list[torch.Tensor]:
    """Each clip's log-mel [M, F_k] with the backbone's feature parameters."""
    from framecall.audio.features import log_mel
    from framecall.audio.io import decode_audio

    out = []
    for k, data in enumerate(item["clips"]):
        samples, _ = decode_audio(data, source=f"{item['id']} clip {k + 1}")
        out.append(torch.from_numpy(np.ascontiguousarray(log_mel(samples, backbone.feature_params))))
    return out


def prompt_inputs(backbone: QwenAudioBackbone, items: list[Mapping[str, Any]],
                  repeat: int = 1) -> dict[str, torch.Tensor]:
    """Left-padded multi-clip prompts of ``items``, each ``repeat`` times in a row (item-major, as
    G completions per prompt are laid out); every item's clips are decoded and featurized once."""
    feats = [featurize_clips(backbone, it) for it in items]
    return backbone.multi_inputs([it["prompt"] for it in items for _ in range(repeat)],
                                 [f for f in feats for _ in range(repeat)])


def iterate_items(dataset, batch_size: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    """Endless batches of items from a (worker's shard of a) Ray Dataset, re-shuffled per epoch."""
    epoch = 0
    while True:
        got = False
        for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=True,
                                          local_shuffle_buffer_size=4 * batch_size,
                                          local_shuffle_seed=seed + 1000 * epoch):
            got = True
            yield batch_to_items(batch)
        if not got:
            raise DataSplitError(f"the dataset yields no batch of {batch_size} items")
        epoch += 1
