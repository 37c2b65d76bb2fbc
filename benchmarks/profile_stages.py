"""Mean CPU ms per request in each stage of the model path, and per row of the training input path (issue #19).

    .venv/bin/python benchmarks/profile_stages.py [--data runs/data/words_all_8k] [--requests 128] \
        [--batches 1,32] [--featurize per_clip|batched|both] [--threads 1] [--repeats 1] [--output-json PATH]

Model path, in process (no HTTP, no Ray), for held-out shard rows sent as ``/v1/localize`` JSON
bodies: parse (strict JSON, pydantic, base64), audio decode (+ resample; the shards are 16 kHz
already, so no resampling happens), featurize, collate/pad, forward (tiny Qwen2.5-Omni thinker +
random Poisson head, the default ``topn_nms`` decoder), decode (events, confidences, result dict)
and the response JSON. Each stage runs for a whole batch of ``--batches`` requests, as the model
replica would; ``engine.predict`` is the whole model-side call for comparison with the sum of its
stages. Training input path: read (parquet), FLAC decode, featurize, collate (``FrameCollator``).

CPU time is ``time.process_time`` (every thread of this process, torch's intra-op threads
included), not wall time: the machine is shared, and CPU time stays comparable while other jobs run.
``--featurize`` picks the featurizer: ``per_clip`` (``log_mel`` one clip at a time, then
``pad_features``) or ``batched`` (the padded waveform batch through ``log_mel_batch``).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.audio.features import log_mel  # noqa: E402
from framecall.audio.io import decode_audio  # noqa: E402
from framecall.data.collate import FrameCollator, pad_features  # noqa: E402
from framecall.data.shards import list_shards  # noqa: E402
from framecall.inference import FrameLocalizer, Query  # noqa: E402

MODEL_STAGES = ["parse", "audio decode", "featurize", "collate/pad", "forward", "decode", "response"]
TRAIN_STAGES = ["read", "audio decode", "featurize", "collate"]


class StageClock:
    """Accumulates CPU seconds per stage: ``with clock("name"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._name, self._t0 = "", 0.0

    def __call__(self, name: str) -> StageClock:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._t0 = time.process_time()

    def __exit__(self, *exc: Any) -> None:
        self.seconds[self._name] += time.process_time() - self._t0


def tiny_engine() -> FrameLocalizer:
    """The tiny Omni thinker with a random (structured) Poisson head, as the Serve tests build it."""
    from framecall.audio.features import FeatureParams
    from framecall.models.checkpoint import CheckpointManifest
    from framecall.models.frame_model import build_frame_model

    torch.manual_seed(0)
    model = build_frame_model("tiny-omni", "poisson", 4)
    with torch.no_grad():
        model.head.proj.weight.normal_(0, 0.5)
    model.eval()
    manifest = CheckpointManifest(backbone="tiny-omni", model_type="qwen2_5_omni", head="poisson", loss="poisson",
                                  default_decoder="topn_nms", frame_s=0.04, subframes=4, features=FeatureParams(),
                                  tasks=["words_all"])
    return FrameLocalizer(model, manifest, name="tiny")


def request_texts(data_dir: str, count: int) -> list[str]:
    """/v1/localize JSON bodies (as sent over HTTP) of the first ``count`` test rows."""
    from framecall.bench.serve import request_bodies

    bodies = request_bodies(data_dir, "test", limit=count)
    return [json.dumps(bodies[i % len(bodies)]) for i in range(count)]


def feature_stages(mode: str, engine: FrameLocalizer) -> list[tuple[str, Callable]]:
    """The featurize and collate/pad stages, in the order ``mode`` runs them: waveforms [N_b] in,
    (features [B, M, F], feature_mask [B, F], token_mask [B, T_tok]) out."""
    tokens_for_frames = engine.model.backbone.tokens_for_frames
    if mode == "per_clip":
        return [("featurize", lambda waves: [log_mel(w, engine.features) for w in waves]),
                ("collate/pad", lambda feats: pad_features(feats, tokens_for_frames)[:3])]
    from framecall.audio.features import log_mel_batch, pad_waveforms

    device = next(engine.model.parameters()).device

    def featurize(padded: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        features, feature_mask = log_mel_batch(*padded, engine.features)
        tokens = torch.tensor([tokens_for_frames(int(n)) for n in feature_mask.sum(1).tolist()])
        return features, feature_mask, torch.arange(int(tokens.max()))[None, :] < tokens[:, None]

    return [("collate/pad", lambda waves: pad_waveforms(waves, device)), ("featurize", featurize)]


def model_batch(engine: FrameLocalizer, texts: list[str], stages: list[tuple[str, Callable]],
                clock: StageClock) -> None:
    """One batch of request bodies through every stage of the model path."""
    from framecall.serve_app import LocalizeIn, load_json, validate

    with clock("parse"):
        parsed = [validate(LocalizeIn, load_json(t, "body")) for t in texts]
        audio = [base64.b64decode(p.audio_b64, validate=True) for p in parsed]
    with clock("audio decode"):
        waves = [decode_audio(a, "audio_b64", max_seconds=60.0)[0] for a in audio]
    value: Any = waves
    for name, fn in stages:
        with clock(name):
            value = fn(value)
    features, feature_mask, token_mask = value
    with clock("forward"), torch.no_grad():
        scores, mask = engine.model({"features": features, "feature_mask": feature_mask, "token_mask": token_mask,
                                     "prompts": [p.questions[0].question for p in parsed]})
        scores, mask = scores.float().cpu(), mask.cpu()
    with clock("decode"):
        queries = [Query(w, p.questions[0].question, p.questions[0].num_events) for w, p in zip(waves, parsed)]
        results = [engine._answer(q, [scores[r][mask[r]]], [0]) for r, q in enumerate(queries)]
    with clock("response"):
        for p, r in zip(parsed, results):
            json.dumps({"model": engine.info, "answers": [{"question": p.questions[0].question, **r}]})


def whole_predict(engine: FrameLocalizer, texts: list[str], batch: int) -> float:
    """CPU ms per request of ``engine.predict`` alone (featurize + collate + forward + decode)."""
    from framecall.serve_app import LocalizeIn, load_json, validate

    queries = []
    for t in texts:
        p = validate(LocalizeIn, load_json(t, "body"))
        samples = decode_audio(base64.b64decode(p.audio_b64), "audio_b64", max_seconds=60.0)[0]
        queries.append(Query(samples, p.questions[0].question, p.questions[0].num_events))
    engine.predict(queries[:batch])  # warm-up
    t0 = time.process_time()
    for lo in range(0, len(queries), batch):
        engine.predict(queries[lo:lo + batch])
    return 1000 * (time.process_time() - t0) / len(queries)


def profile_model(engine: FrameLocalizer, texts: list[str], batch: int, mode: str) -> dict[str, float]:
    stages = feature_stages(mode, engine)
    model_batch(engine, texts[:batch], stages, StageClock())  # warm-up (first-call allocations)
    clock = StageClock()
    for lo in range(0, len(texts), batch):
        model_batch(engine, texts[lo:lo + batch], stages, clock)
    out = {name: 1000 * clock.seconds[name] / len(texts) for name in MODEL_STAGES}
    out["sum of stages"] = sum(out.values())
    return out


def train_rows(data_dir: str, count: int, clock: StageClock) -> list[dict[str, Any]]:
    """The first ``count`` shard rows, read with pyarrow (timed as "read")."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in list_shards(data_dir):
        with clock("read"):
            rows.extend(pq.read_table(path).to_pylist())
        if len(rows) >= count:
            return rows[:count]
    return rows


def profile_train(engine: FrameLocalizer, data_dir: str, count: int, batch: int, mode: str) -> dict[str, float]:
    """Per row: read, decode, featurize, collate (per-clip: the featurized rows as Ray Data hands them
    to ``FrameCollator``; batched: the padded waveforms through ``log_mel_batch``)."""
    clock = StageClock()
    rows = train_rows(data_dir, count, clock)
    stages = feature_stages(mode, engine)
    for lo in range(0, len(rows), batch):
        chunk = rows[lo:lo + batch]
        with clock("audio decode"):
            waves = [decode_audio(r["audio"], r["id"], max_seconds=60.0)[0] for r in chunk]
        if mode == "per_clip":
            with clock("featurize"):
                feats = [log_mel(w, engine.features) for w in waves]
            with clock("collate"):
                FrameCollator()({"features": [np.ascontiguousarray(f).tobytes() for f in feats],
                                 "num_mels": [f.shape[0] for f in feats], "num_frames": [f.shape[1] for f in feats],
                                 **{k: [r[k] for r in chunk] for k in
                                    ("event_times_s", "id", "prompt", "target_text", "task")}})
        else:
            (_, pad), (_, featurize) = stages
            with clock("collate"):
                padded = pad(waves)
            with clock("featurize"):
                featurize(padded)
    out = {name: 1000 * clock.seconds[name] / len(rows) for name in TRAIN_STAGES}
    out["sum of stages"] = sum(out.values())
    return out


def table(results: dict[str, dict[str, float]], stages: list[str]) -> str:
    cols = list(results)
    lines = ["| stage | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for stage in [*stages, "sum of stages", "engine.predict"]:
        if any(stage in results[c] for c in cols):
            lines.append(f"| {stage} | " + " | ".join(f"{results[c][stage]:.2f}" if stage in results[c] else ""
                                                      for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/data/words_all_8k")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--featurize", choices=["per_clip", "batched", "both"], default="per_clip")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads; 1 as in a Serve replica or Ray task of num_cpus=1 (Ray sets "
                             "OMP_NUM_THREADS=1 there); on a busy machine 2 threads also spin, inflating CPU time")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every setting, interleaved; medians reported")
    parser.add_argument("--output-json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = tiny_engine()
    texts = request_texts(args.data, args.requests)
    modes = ["per_clip", "batched"] if args.featurize == "both" else [args.featurize]
    runs: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for _ in range(args.repeats):  # settings interleaved, so that a busy spell on the machine hits all of them
        for mode in modes:
            for b in [int(x) for x in args.batches.split(",")]:
                key = f"{mode}, batch {b}"
                runs["model", key].append({**profile_model(engine, texts, b, mode),
                                           "engine.predict": whole_predict(engine, texts, b)})
                runs["train", key].append(profile_train(engine, args.data, args.requests, b, mode))
    medians = {k: {stage: statistics.median(r[stage] for r in v) for stage in v[0]} for k, v in runs.items()}
    model = {key: m for (path, key), m in medians.items() if path == "model"}
    train = {key: m for (path, key), m in medians.items() if path == "train"}
    print(f"CPU ms per request (model path), {args.requests} requests, median of {args.repeats} run(s), "
          f"torch threads {torch.get_num_threads()}")
    print(table(model, MODEL_STAGES))
    print(f"\nCPU ms per row (training input path), {args.requests} rows")
    print(table(train, TRAIN_STAGES))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"model": model, "train": train}, indent=1))


if __name__ == "__main__":
    main()
