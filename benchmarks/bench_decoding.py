"""Median time to decode n events from T sub-frames, per decoder, and each decoder's accuracy on
synthetic curves with known events, on this machine.

    python benchmarks/bench_decoding.py [--events 100] [--frames 3000] [--repeats 200] [--items 200]

Speed: intensities are peaky (n bumps over a -8 floor, like a trained head); each decoder runs
once to warm up, then ``--repeats`` times; torch uses its default thread count.

Accuracy: ``--items`` curves of 5 s (500 sub-frames of 10 ms) with 4-20 events at least 60 ms
apart; each event's mass (0.6-1.0) is split over its sub-frame and the next by a random fraction
(a word whose intensity spreads over two sub-frames), with noise over a -7 floor. Decoded with
the true n; acc@20/40 ms (positional and accuracy-optimal Hungarian pairing) against the left
edge of the event's mass. Binary-only decoders read the same curve as logits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.frames.decoding import DECODER_SPECS, decode  # noqa: E402
from framecall.metrics import TimestampMetrics  # noqa: E402

UNIT_S = 0.01  # seconds per sub-frame (40 ms tokens x 4)


def _head(name: str) -> str:
    return "poisson" if "poisson" in DECODER_SPECS[name].heads else "binary"


def speed(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    g = torch.Generator().manual_seed(0)
    x = torch.full((args.frames,), -8.0) + 0.3 * torch.randn(args.frames, generator=g)
    centres = torch.randperm(args.frames, generator=g)[: args.events]
    x[centres] = 1.0
    out = {}
    for name in DECODER_SPECS:
        def run() -> None:
            decode(name, x, args.events, head=_head(name), unit_s=UNIT_S)

        run()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        out[name] = {"median": 1000 * statistics.median(times), "p90": 1000 * sorted(times)[int(0.9 * len(times))]}
    return out


def synthetic_curve(rng: np.random.Generator, frames: int = 500) -> tuple[torch.Tensor, list[float]]:
    """-> (log-intensity [T] float64, gold onsets in seconds): events split over two sub-frames."""
    n = int(rng.integers(4, 21))
    slots = np.sort(rng.choice(np.arange(2, frames // 6 - 1), size=n, replace=False)) * 6  # >= 60 ms apart
    lam = np.exp(-7 + 0.5 * rng.standard_normal(frames))
    for f in slots:
        mass, share = rng.uniform(0.6, 1.0), rng.uniform(0.2, 0.8)
        lam[f] += mass * share
        lam[f + 1] += mass * (1 - share)
    return torch.from_numpy(np.log(lam)), [float(f * UNIT_S) for f in slots]


def accuracy(items: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    curves = [synthetic_curve(rng) for _ in range(items)]
    out = {}
    for name in DECODER_SPECS:
        metrics = {p: TimestampMetrics(pairing=p) for p in ("positional", "hungarian_acc")}
        for x, gold in curves:
            pred = (decode(name, x, len(gold), head=_head(name), unit_s=UNIT_S) * UNIT_S).tolist()
            for m in metrics.values():
                m.add(pred, gold)
        out[name] = {f"{p}_{k}": m.summary()[k] for p, m in metrics.items() for k in ("acc@20ms", "acc@40ms")}
        out[name]["mad_ms"] = 1000 * metrics["positional"].summary()["mad_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--items", type=int, default=200, help="synthetic curves for the accuracy table (0: none)")
    p.add_argument("--output-json")
    args = p.parse_args()
    result = {"events": args.events, "frames": args.frames, "torch_threads": torch.get_num_threads(),
              "ms": speed(args)}
    if args.items:
        result["accuracy"] = accuracy(args.items)
    print(json.dumps(result, indent=2))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
