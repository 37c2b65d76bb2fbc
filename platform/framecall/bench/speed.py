"""Token generation vs. one forward pass + frame decoding, timed on the same backbone.

The checkpoint must have both outputs (the interpolated loss trains them together): the
token answer is generated greedily with the KV cache, *held to the reference answer's
token count* (min = max new tokens), so the comparison measures the cost of printing the
whole timestamp list rather than of an early stop; the frame answer is one forward pass
of the same batch plus exact decoding of the known number of words. Featurization and
collation are done once, outside both timings.

``target_formats`` picks the answer whose length generation is held to: ``data`` (the rows'
own target_text), ``compact`` (``[0.21, ...]``) or ``json_objects`` (the paper's
``[{"word": "much", "start": 0.63}, ...]``), rendered from the row's words and times. Greedy
decoding at a fixed token count costs the same whatever the tokens are, so one checkpoint
measures every format; the frame path does not depend on it and is timed once.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any, Sequence

import torch

from framecall.token_answers import TARGET_FORMATS, format_word_times

BUCKETS = ((1, 5), (6, 10), (11, 15), (16, 20), (21, 25), (26, 10_000))


def bucket_name(lo: int, hi: int) -> str:
    return f"{lo}+" if hi >= 10_000 else f"{lo}-{hi}"


def _median_time(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_rows(data_dir: str, split: str | None, per_bucket: int, features) -> dict[str, list[dict]]:
    """Featurized words_all rows grouped by word-count bucket (at most ``per_bucket`` each)."""
    from framecall.data.pipeline import PipelineConfig, iterate_rows_locally

    groups: dict[str, list[dict]] = {bucket_name(*b): [] for b in BUCKETS}
    for table in iterate_rows_locally(data_dir, PipelineConfig(features=features), split=split):
        for row in table.to_pylist():
            n = len(row["event_times_s"])
            for lo, hi in BUCKETS:
                if lo <= n <= hi and len(groups[bucket_name(lo, hi)]) < per_bucket:
                    groups[bucket_name(lo, hi)].append(row)
        if all(len(g) >= per_bucket for g in groups.values()):
            break
    return groups


def answer_text(row: dict, target_format: str) -> str:
    """The token answer of a featurized words_all row in ``target_format`` (see module doc)."""
    if target_format == "data":
        return str(row["target_text"])
    words = json.loads(row["meta"] or "{}").get("words")
    if not words or len(words) != len(row["event_times_s"]):
        raise ValueError(f"row {row['id']!r}: meta has no word list matching its {len(row['event_times_s'])} "
                         f"times; target format {target_format!r} needs a synthetic words_all row")
    return format_word_times([(w, t) for (w, _), t in zip(words, row["event_times_s"])], target_format)


def _answer_tokens(tok, rows: list[dict], target_format: str) -> list[int]:
    """Tokens of each row's answer plus <|im_end|>: what a trained token model prints."""
    return [len(tok(answer_text(r, target_format) + "<|im_end|>", add_special_tokens=False)["input_ids"])
            for r in rows]


@torch.no_grad()
def bench_speed(checkpoint: str, data_dir: str, split: str | None = "test", batch_sizes: Sequence[int] = (1, 8, 32),
                repeats: int = 3, warmup: int = 1, target_formats: Sequence[str] = ("data",)) -> dict[str, Any]:
    from framecall.data.collate import FrameCollator
    from framecall.frames.decoding import decode
    from framecall.frames.units import FrameGrid
    from framecall.models.frame_model import CheckpointError, load_frame_model

    unknown = [f for f in target_formats if f not in ("data", *TARGET_FORMATS)]
    if unknown:
        raise ValueError(f"target formats {unknown} unknown; valid: {['data', *TARGET_FORMATS]}")
    model, manifest = load_frame_model(checkpoint)
    try:
        manifest.check(checkpoint, frame_head=True, token_output=True)
    except CheckpointError as e:
        raise CheckpointError(f"{e} (train it with jobs/train_interpolated.py)") from None
    grid = FrameGrid(manifest.frame_s, manifest.subframes)
    collate = FrameCollator(grid=grid, tokens_for_frames=model.backbone.tokens_for_frames)
    groups = load_rows(data_dir, split, max(batch_sizes), manifest.features)
    tok = model.backbone.tokenizer
    decoder, head = manifest.default_decoder, manifest.head
    results = []
    for name, rows in groups.items():
        if not rows:
            continue
        for bs in batch_sizes:
            picked = [rows[i % len(rows)] for i in range(bs)]  # a small bucket is reused cyclically
            batch = collate({k: [r[k] for r in picked] for k in picked[0]})

            def frames() -> None:
                scores, mask = model(batch)
                for b in range(scores.shape[0]):
                    decode(decoder, scores[b][mask[b]].float(), len(batch["event_times_s"][b]), head=head,
                           unit_s=grid.unit_s)

            t_frame = _median_time(frames, repeats, warmup)
            words = [len(r["event_times_s"]) for r in picked]
            for target_format in target_formats:
                tokens = _answer_tokens(tok, picked, target_format)
                length = max(tokens)

                def generate() -> None:
                    model.generate_answers(batch, max_new_tokens=length, min_new_tokens=length)

                t_gen = _median_time(generate, repeats, warmup)
                results.append({"bucket": name, "batch_size": bs, "target_format": target_format,
                                "mean_words": sum(words) / len(words), "distinct_items": len(rows),
                                "tokens_per_word": sum(t / w for t, w in zip(tokens, words)) / len(words),
                                "generated_tokens": length, "generation_s": t_gen, "frame_s": t_frame,
                                "speedup": t_gen / t_frame})
                print(results[-1], flush=True)
    return {"checkpoint": str(checkpoint), "decoder": decoder, "repeats": repeats, "warmup": warmup,
            "threads": torch.get_num_threads(), "target_formats": list(target_formats), "results": results}


def speed_table(report: dict[str, Any]) -> str:
    lines = ["| target | words | batch | items | tokens/word | tokens generated | generation (ms) | "
             "forward + decode (ms) | speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r.get('target_format', 'data')} | {r['bucket']} | {r['batch_size']} | {r['distinct_items']} | "
                     f"{r.get('tokens_per_word', float('nan')):.1f} | {r['generated_tokens']} | "
                     f"{1000 * r['generation_s']:.1f} | {1000 * r['frame_s']:.1f} | {r['speedup']:.1f}x |")
    return "\n".join(lines)


def speed_figure(report: dict[str, Any]):
    """Speed-up vs. words, one line per batch size (the seed's Figure 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    order = [bucket_name(*b) for b in BUCKETS]
    series = sorted({(r.get("target_format", "data"), r["batch_size"]) for r in report["results"]})
    for fmt, bs in series:
        rows = sorted((r for r in report["results"] if r["batch_size"] == bs and r.get("target_format", "data") == fmt),
                      key=lambda r: order.index(r["bucket"]))
        label = f"batch {bs}" if len({f for f, _ in series}) == 1 else f"{fmt}, batch {bs}"
        ax.plot([r["bucket"] for r in rows], [r["speedup"] for r in rows], marker="o",
                linestyle="-" if fmt != "json_objects" else "--", label=label)
    ax.set_xlabel("words per item")
    ax.set_ylabel("speed-up (generation / frame)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
