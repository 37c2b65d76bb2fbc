"""Cost of bidirectional audio attention: one training step (forward + backward of a Poisson frame
model) and one no-grad forward, with model.bidirectional_audio off and on, per backbone and
attention implementation, on this machine.

    python benchmarks/bench_bidirectional.py [--batch 8] [--seconds 3] [--repeats 10]

Random log-mel clips of ``--seconds`` each (75 audio tokens for 3 s); the question comes first,
as in training. Off and on alternate within each repeat so that load on the machine hits both
alike; the median is reported, after one warm-up of each. Times are this process's CPU seconds
with ``--threads`` torch threads (1 by default): on a shared, loaded machine wall time measures
the neighbours more than the model.
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

from framecall.models.frame_model import build_frame_model  # noqa: E402


def make_batch(model, batch: int, seconds: float) -> dict:
    frames = int(seconds * 100)  # 10 ms mel hop
    t_tok = model.backbone.tokens_for_frames(frames)
    return {"prompts": ["When does the 1st occurrence of the word 'much' occur?"] * batch,
            "features": torch.randn(batch, 128, frames), "feature_mask": torch.ones(batch, frames, dtype=torch.long),
            "token_mask": torch.ones(batch, t_tok, dtype=torch.bool)}


def step_seconds(model, batch: dict, train: bool) -> float:
    t0 = time.process_time()
    if train:
        scores, mask = model(batch)
        scores[mask].sum().backward()  # [B, T_tok * S] each
        model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            model(batch)
    return time.process_time() - t0


def measure(name: str, impl: str, args) -> dict:
    torch.manual_seed(0)
    model = build_frame_model(name, "poisson", 4, attn_implementation=impl)
    batch = make_batch(model, args.batch, args.seconds)
    times: dict[str, list[float]] = {f"{mode}_{flag}": [] for mode in ("train", "forward") for flag in ("off", "on")}
    for rep in range(args.repeats + 1):
        for flag in ("off", "on"):
            model.backbone.set_bidirectional_audio(flag == "on")
            for mode in ("train", "forward"):
                t = step_seconds(model, batch, mode == "train")
                if rep:  # the first round warms up
                    times[f"{mode}_{flag}"].append(t)
    return {"backbone": name, "attn": impl, **{k: round(statistics.median(v) * 1000, 1) for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--backbones", nargs="+", default=["tiny-omni", "tiny-qwen2-audio"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(name, impl, args) for name in args.backbones for impl in ("sdpa", "eager")]
    print("| backbone | attention | train step off (CPU ms) | on | forward off (CPU ms) | on |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backbone']} | {r['attn']} | {r['train_off']} | {r['train_on']} | "
              f"{r['forward_off']} | {r['forward_on']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
