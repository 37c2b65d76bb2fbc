"""Predict timestamps with a frame model and score them, per decoder and per task."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch

from framecall.frames.decoding import POISSON_ONLY, decode
from framecall.frames.units import FrameGrid
from framecall.metrics import TimestampMetrics, format_table

TABLE_COLUMNS = ["acc@20ms", "acc@40ms", "acc@100ms", "mad_s", "count_error", "missing"]


def usable_decoders(decoders: Sequence[str], head: str) -> list[str]:
    return [d for d in decoders if not (head == "binary" and d in POISSON_ONLY)]


@torch.no_grad()
def predict_batch(model, batch: dict, decoders: Sequence[str], grid: FrameGrid, head: str,
                  nms_min_separation: int = 3, known_count: bool = True,
                  keep_scores: bool = False) -> list[dict[str, Any]]:
    """One record per item: id, task, gold times, and each decoder's predicted seconds.

    ``known_count``: decode exactly the gold number of events (the questions state it:
    "the k-th occurrence" is one event, a transcript gives the word count); otherwise a
    Poisson head estimates it from Lam(T). ``keep_scores`` adds each item's valid scores [T_b].
    """
    scores, mask = model(batch)  # [B, T], [B, T]
    scores, mask = scores.float().cpu(), mask.cpu()
    records = []
    for b in range(scores.shape[0]):
        valid = scores[b][mask[b]]  # [T_b]
        gold = batch["event_times_s"][b]
        n = len(gold) if known_count else None
        preds = {}
        for name in decoders:
            opts = {"min_separation": nms_min_separation} if name == "topn_nms" else {}
            pos = decode(name, valid, n, head=head, **opts)
            preds[name] = [float(x) for x in grid.to_seconds(pos)]
        record = {"id": batch["ids"][b], "task": batch["tasks"][b], "gold": list(gold), "preds": preds,
                  "expected_count": float(torch.exp(torch.logsumexp(valid.double(), 0))) if head == "poisson" else None}
        if keep_scores:
            record["scores"] = valid.numpy()
        records.append(record)
    return records


def score_records(records: Iterable[dict[str, Any]], decoders: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """-> {decoder: {"all": summary, <task>: summary, ...}}."""
    records = list(records)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in decoders:
        per_task: dict[str, TimestampMetrics] = {}
        overall = TimestampMetrics()
        for r in records:
            overall.add(r["preds"][name], r["gold"])
            per_task.setdefault(r["task"], TimestampMetrics()).add(r["preds"][name], r["gold"])
        out[name] = {"all": overall.summary(), **{t: m.summary() for t, m in sorted(per_task.items())}}
    return out


def select_metric_name(task_names: Iterable[str], configured: str = "auto") -> str:
    """The seed selects by acc@20 ms for word tasks, acc@40 ms for the others."""
    if configured != "auto":
        return configured
    tasks = set(task_names)
    return "acc@20ms" if tasks and all(t.startswith("words") for t in tasks) else "acc@40ms"


def results_table(scores: dict[str, dict[str, dict[str, float]]], title: str) -> str:
    rows = {}
    for decoder, by_task in scores.items():
        for task, summary in by_task.items():
            if task == "all" and len(by_task) == 2:
                continue  # one task: its row equals "all"
            rows[f"{decoder} / {task}"] = summary
    return format_table(rows, TABLE_COLUMNS, title=title, row_header="decoder / task")


def flat_metrics(scores: dict[str, dict[str, dict[str, float]]], prefix: str) -> dict[str, float]:
    """``{prefix}_{decoder}_{metric}`` over the "all" rows, for Ray reports and MLflow."""
    flat = {}
    for decoder, by_task in scores.items():
        for metric, v in by_task["all"].items():
            if metric in ("items", "events"):
                continue
            flat[f"{prefix}_{decoder}_{metric.replace('@', '')}"] = float(v) if np.isfinite(v) else -1.0
    return flat
