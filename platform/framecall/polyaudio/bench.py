"""PolyAudio splits as shards: train / preference / bench, defined by (generator version, seed).

Each row has the clips (``clips``: audio, duration, event onsets, labels, speaker) and, in
``audio``, the clips concatenated with 2 s of silence (the seed's protocol for models
without multi-audio input). Audio is Ogg Vorbis to keep the default bench (250 items per
task, 2,750 in all) at a few hundred MB. ``event_times_s`` holds the asked-about onset in
the concatenated timeline for temporal grounding (usable by frame heads), else nothing.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import soundfile as sf

from framecall.polyaudio.clips import SPLITS, SR, ClipSource
from framecall.polyaudio.tasks import GENERATOR_VERSION, GENERATORS
from framecall.prompts import answer_text

GAP_S = 2.0


@dataclass
class PolyConfig:
    split: str = "bench"
    """train | preference | bench (disjoint clip streams)."""
    per_task: int = 250
    """Items per task (the seed's bench: 250 x 11 = 2,750), balanced over 2-5 clips."""
    seed: int = 0
    tasks: list[str] = field(default_factory=lambda: list(GENERATORS))
    min_clips: int = 2
    max_clips: int = 5

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        unknown = [t for t in self.tasks if t not in GENERATORS]
        if unknown:
            raise ValueError(f"unknown PolyAudio task(s) {unknown}; valid: {list(GENERATORS)}")
        if not 2 <= self.min_clips <= self.max_clips <= 5:
            raise ValueError("need 2 <= min_clips <= max_clips <= 5")


def encode_ogg(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), SR, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def generate_items(cfg: PolyConfig) -> Iterator[dict[str, Any]]:
    span = cfg.max_clips - cfg.min_clips + 1
    for task_no, name in enumerate(GENERATORS):
        if name not in cfg.tasks:
            continue
        source = ClipSource(cfg.seed, cfg.split, stream=task_no)  # one clip stream per task: tasks regenerate alone
        for i in range(cfg.per_task):
            n = cfg.min_clips + i % span
            rng = np.random.default_rng([cfg.seed, SPLITS.index(cfg.split), task_no, i])
            task = GENERATORS[name](rng, source, n)
            gap = np.zeros(int(GAP_S * SR), np.float32)
            pieces, offsets, t = [], [], 0.0
            for k, clip in enumerate(task.clips):
                offsets.append(t)
                pieces += [clip.samples] + ([gap] if k < len(task.clips) - 1 else [])
                t += clip.duration_s + (GAP_S if k < len(task.clips) - 1 else 0.0)
            joined = np.concatenate(pieces)
            times = []
            if name == "temporal_grounding":
                times = [round(offsets[task.answer["index"] - 1] + task.answer["time"], 4)]
            meta = {"generator_version": GENERATOR_VERSION, "seed": cfg.seed, "task": name,
                    "answer_type": task.answer_type, "answer": task.answer, "evidence": task.evidence,
                    "question": task.question, "reference": task.reference, "num_clips": len(task.clips),
                    "clip_ids": [c.clip_id for c in task.clips], "clip_digests": [c.digest() for c in task.clips],
                    "clip_offsets_s": [round(o, 4) for o in offsets],
                    "transcripts": [c.transcript for c in task.clips], "kinds": [c.kind for c in task.clips]}
            yield {
                "id": f"poly-{name}-{cfg.split}-s{cfg.seed}-{i:05d}", "task": f"poly_{name}", "split": cfg.split,
                "source": "synthetic-polyaudio", "prompt": task.question,
                "target_text": answer_text(task.reference), "answer": task.reference,
                "audio": encode_ogg(joined), "sample_rate": SR, "duration_s": joined.size / SR,
                "event_times_s": times, "num_events": len(times), "query_index": None,
                "clips": [{"audio": encode_ogg(c.samples), "sample_rate": SR, "duration_s": c.duration_s,
                           "event_times_s": [t for _, t in c.events], "labels": c.labels, "speaker": c.speaker}
                          for c in task.clips],
                "meta": json.dumps(meta),
            }


def judge_item(row: dict[str, Any]) -> dict[str, Any]:
    """What a judge needs from a shard row (question, reference, answer metadata)."""
    meta = json.loads(row["meta"]) if isinstance(row["meta"], str) else row["meta"]
    return {"id": row["id"], "task": meta["task"], "question": meta["question"], "reference": meta["reference"],
            "answer_type": meta["answer_type"], "answer": meta["answer"]}
