"""Statistics of a shard directory: items per task and split, histograms, total hours.

CLI: ``python jobs/data_stats.py DIR [--json]`` (or the ``framecall-data-stats`` script).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from framecall.data.shards import list_shards

_STAT_COLUMNS = ["task", "split", "duration_s", "num_events"]


def shard_stats(data_dir: str | Path, duration_bins: int = 10) -> dict[str, Any]:
    """Reads only the small columns of every shard (never the audio)."""
    counts: Counter[tuple[str, str]] = Counter()
    durations, num_events = [], []
    for path in list_shards(data_dir):
        table = pq.read_table(path, columns=_STAT_COLUMNS)
        for task, split in zip(table["task"].to_pylist(), table["split"].to_pylist()):
            counts[(task, split)] += 1
        durations.append(table["duration_s"].to_numpy())
        num_events.append(pc.cast(table["num_events"], "int64").to_numpy())
    dur = np.concatenate(durations)
    nev = np.concatenate(num_events)
    hist, edges = np.histogram(dur, bins=duration_bins)
    ev_counts = Counter(int(n) for n in nev)
    by_task: dict[str, dict[str, int]] = {}
    for (task, split), n in sorted(counts.items()):
        by_task.setdefault(task, {})[split] = n
    return {
        "data_dir": str(data_dir),
        "num_items": int(dur.size),
        "total_hours": float(dur.sum() / 3600.0),
        "items": by_task,
        "duration_s": {"min": float(dur.min()), "mean": float(dur.mean()), "max": float(dur.max()),
                       "histogram": {"edges": [round(float(e), 3) for e in edges], "counts": hist.tolist()}},
        "num_events": {"histogram": {str(k): ev_counts[k] for k in sorted(ev_counts)}},
    }


def format_stats(stats: dict[str, Any]) -> str:
    lines = [f"{stats['data_dir']}: {stats['num_items']} items, {stats['total_hours']:.3f} h"]
    lines.append("items per task and split:")
    for task, splits in stats["items"].items():
        lines.append(f"  {task:<12} " + "  ".join(f"{s}={n}" for s, n in splits.items()))
    d = stats["duration_s"]
    lines.append(f"duration (s): min {d['min']:.2f}  mean {d['mean']:.2f}  max {d['max']:.2f}")
    edges, hist_counts = d["histogram"]["edges"], d["histogram"]["counts"]
    peak = max(hist_counts) or 1
    for lo, hi, n in zip(edges, edges[1:], hist_counts):
        lines.append(f"  {lo:7.2f}-{hi:7.2f} {n:6d} {'#' * int(40 * n / peak)}")
    lines.append("events per item:")
    ev = stats["num_events"]["histogram"]
    peak = max(ev.values()) or 1
    for k, n in ev.items():
        lines.append(f"  {k:>5} {n:6d} {'#' * int(40 * n / peak)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Statistics of a framecall shard directory.")
    parser.add_argument("data_dir", help="directory with shard-*.parquet")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    stats = shard_stats(args.data_dir)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
