"""Median time to decode n events from T sub-frames, per decoder, on this machine.

    python benchmarks/bench_decoding.py [--events 100] [--frames 3000] [--repeats 200]

Intensities are peaky (n bumps over a -8 floor, like a trained head); each decoder runs
once to warm up, then ``--repeats`` times; torch uses its default thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.frames.decoding import DECODERS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--output-json")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.full((args.frames,), -8.0) + 0.3 * torch.randn(args.frames, generator=g)
    centres = torch.randperm(args.frames, generator=g)[: args.events]
    x[centres] = 1.0
    result = {"events": args.events, "frames": args.frames, "torch_threads": torch.get_num_threads(), "ms": {}}
    for name, fn in DECODERS.items():
        fn(x, args.events)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn(x, args.events)
            times.append(time.perf_counter() - t0)
        result["ms"][name] = {"median": 1000 * statistics.median(times), "p90": 1000 * sorted(times)[int(0.9 * len(times))]}
    print(json.dumps(result, indent=2))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
