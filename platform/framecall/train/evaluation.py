"""Predict timestamps with a frame model and score them, per decoder and per task."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch

from framecall.frames.decoding import DECODER_SPECS, decode_curves, decoder_serves
from framecall.frames.units import FrameGrid
from framecall.metrics import TimestampMetrics, check_pairing, format_table
from framecall.token_answers import parse_timestamps

TABLE_COLUMNS = ["acc@20ms", "acc@40ms", "acc@100ms", "mad_s", "count_error", "missing"]


TOKENS = "tokens"  # the name of generated answers among the decoders
ALL = "all"  # among the decoders: every registered decoder the head supports
DEFAULT_PAIRINGS = ("positional", "hungarian_acc")
"""The main tables: the strict positional pairing plus the accuracy-optimal Hungarian one."""


def usable_decoders(decoders: Sequence[str], head: str, token_output: bool = False) -> list[str]:
    """The outputs a model offers among ``decoders``: frame decoders its head supports ("all":
    every registered one), plus "tokens" (generated answers) when it has a token output."""
    names = [d for n in decoders for d in (DECODER_SPECS if n == ALL else [n])]
    frame = [] if head == TOKENS else [d for d in dict.fromkeys(names) if d != TOKENS and decoder_serves(d, head)]
    return frame + ([TOKENS] if token_output or head == TOKENS else [])


@torch.no_grad()
def predict_batch(model, batch: dict, decoders: Sequence[str], grid: FrameGrid, head: str,
                  nms_min_separation: int = 3, known_count: bool = True,
                  keep_scores: bool = False, max_new_tokens: int = 256, hop_s: float = 0.01) -> list[dict[str, Any]]:
    """One record per item: id, task, gold times, audio length, and each decoder's predicted seconds.

    ``known_count``: decode exactly the gold number of events (the questions state it:
    "the k-th occurrence" is one event, a transcript gives the word count); otherwise a
    Poisson head estimates it from Lam(T). ``keep_scores`` adds each item's valid scores [T_b].
    "tokens" among ``decoders`` generates the answer text and parses it (record["parse"]).
    ``hop_s``: seconds per mel frame; the audio length is the item's mel frames x hop_s.
    """
    lengths = batch["feature_mask"].sum(dim=1).tolist()  # mel frames per item
    records = [{"id": batch["ids"][b], "task": batch["tasks"][b], "gold": list(batch["event_times_s"][b]),
                "preds": {}, "expected_count": None, "duration_s": lengths[b] * hop_s}
               for b in range(len(batch["ids"]))]
    if TOKENS in decoders:
        texts = model.generate_answers(batch, max_new_tokens=max_new_tokens)
        for record, text in zip(records, texts):
            record["preds"][TOKENS], record["parse"] = parse_timestamps(text)
            record["generated"] = text
    frame_decoders = [d for d in decoders if d != TOKENS]
    if not frame_decoders:
        return records
    scores, mask = model(batch)  # [B, T], [B, T]
    scores, mask = scores.float().cpu(), mask.cpu()
    curves = [scores[b][mask[b]] for b in range(scores.shape[0])]  # [T_b] each
    counts = [len(gold) if known_count else None for gold in batch["event_times_s"]]
    for name in frame_decoders:  # each decoder once over the batch (batched where it has a batched form)
        positions = decode_curves(name, curves, counts, head=head, min_separation=nms_min_separation,
                                  unit_s=grid.unit_s)
        for record, pos in zip(records, positions):
            record["preds"][name] = [float(x) for x in grid.to_seconds(pos)]
    for record, valid in zip(records, curves):
        if head == "poisson":
            record["expected_count"] = float(torch.exp(torch.logsumexp(valid.double(), 0)))
        if keep_scores:
            record["scores"] = valid.numpy()
    return records


def score_records(records: Iterable[dict[str, Any]], decoders: Sequence[str],
                  pairings: Sequence[str] = DEFAULT_PAIRINGS,
                  convention: str = "framecall") -> dict[str, dict[str, dict[str, float]]]:
    """-> {decoder: {"all": summary, <task>: summary, ...}}.

    The first pairing's metrics have plain keys (``acc@20ms``); each further pairing's accuracies
    and MAD are under ``"<pairing>/<metric>"``. ``convention``: framecall | paper (see metrics).
    """
    records = list(records)
    for p in pairings:
        check_pairing(p, convention)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in decoders:
        out[name] = {}
        for i, pairing in enumerate(pairings):
            for task, summary in _summaries(records, name, pairing, convention).items():
                mine = out[name].setdefault(task, {})
                if i == 0:
                    mine.update(summary)
                else:
                    mine.update({f"{pairing}/{k}": v for k, v in summary.items() if k.startswith("acc@")
                                 or k == "mad_s"})
        if name == TOKENS:  # generated answers that yielded no timestamps at all (scored as misses)
            for task, summary in out[name].items():
                rows = [r for r in records if task == "all" or r["task"] == task]
                summary["parse_failure_rate"] = sum(r.get("parse") == "failed" for r in rows) / max(1, len(rows))
    return out


def _summaries(records: list[dict[str, Any]], name: str, pairing: str, convention: str) -> dict[str, dict]:
    """{"all": summary, <task>: summary} of decoder ``name`` under one pairing."""
    per_task: dict[str, TimestampMetrics] = {}
    overall = TimestampMetrics(pairing=pairing, convention=convention)
    for r in records:
        duration = r.get("duration_s")
        overall.add(r["preds"][name], r["gold"], duration)
        per_task.setdefault(r["task"], TimestampMetrics(pairing=pairing, convention=convention)).add(
            r["preds"][name], r["gold"], duration)
    return {"all": overall.summary(), **{t: m.summary() for t, m in sorted(per_task.items())}}


def select_metric_name(task_names: Iterable[str], configured: str = "auto") -> str:
    """The seed selects by acc@20 ms for word tasks, acc@40 ms for the others."""
    if configured != "auto":
        return configured
    tasks = set(task_names)
    return "acc@20ms" if tasks and all(t.startswith("words") for t in tasks) else "acc@40ms"


def results_table(scores: dict[str, dict[str, dict[str, float]]], title: str,
                  pairings: Sequence[str] = DEFAULT_PAIRINGS, convention: str = "framecall") -> str:
    """Rows decoder / task; the first pairing's columns unmarked, each further pairing's columns
    suffixed with its name; the title names every pairing and the convention."""
    rows = {}
    for decoder, by_task in scores.items():
        for task, summary in by_task.items():
            if task == "all" and len(by_task) == 2:
                continue  # one task: its row equals "all"
            rows[f"{decoder} / {task}"] = summary
    columns = TABLE_COLUMNS + [f"{p}/{c}" for p in pairings[1:] for c in TABLE_COLUMNS[:4]]
    columns += ["parse_failure_rate"] if TOKENS in scores else []
    marked = f"; {', '.join(pairings[1:])} columns marked" if len(pairings) > 1 else ""
    note = f" (pairing: {pairings[0]}{marked}; conventions: {convention})"
    return format_table(rows, columns, title=title + note, row_header="decoder / task")


def flat_metrics(scores: dict[str, dict[str, dict[str, float]]], prefix: str) -> dict[str, float]:
    """``{prefix}_{decoder}_{metric}`` over the "all" rows, for Ray reports and MLflow."""
    flat = {}
    for decoder, by_task in scores.items():
        for metric, v in by_task["all"].items():
            if metric in ("items", "events"):
                continue
            name = metric.replace("@", "").replace("/", "_")
            flat[f"{prefix}_{decoder}_{name}"] = float(v) if np.isfinite(v) else -1.0
    return flat
