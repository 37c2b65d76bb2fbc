"""Timestamp metrics: accuracy within tolerances, mean absolute deviation, count error,
and per-bucket tables in the layouts of the paper's tables.

Pairing: predictions and gold times are sorted and paired by position (the i-th
predicted with the i-th gold). A gold event without a predicted partner is a *miss*
(wrong at every tolerance, never dropped); predictions beyond the gold count are
*extra* and reported. MAD is over the paired events; ``missing`` says how many had none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

DEFAULT_TOLERANCES_S = (0.02, 0.04, 0.10)
COUNT_BUCKETS = ((1, 5), (6, 10), (11, 15), (16, 20), (21, 25), (26, None))


def tolerance_name(tol_s: float) -> str:
    return f"acc@{int(round(tol_s * 1000))}ms"


def count_bucket(n: int, buckets: Sequence[tuple[int, int | None]] = COUNT_BUCKETS) -> str:
    for lo, hi in buckets:
        if n >= lo and (hi is None or n <= hi):
            return f"{lo}-{hi}" if hi is not None else f"{lo}+"
    return f"{n}"


def position_bucket(t_s: float, width_s: float = 4.0) -> str:
    lo = int(t_s // width_s) * width_s
    return f"{lo:g}-{lo + width_s:g}s"


@dataclass
class ItemScore:
    """One item's pairing: absolute errors of paired events, misses, extras."""

    abs_errors_s: np.ndarray  # [n_paired]
    gold_times_s: np.ndarray  # [n_gold], sorted
    missing: int
    extra: int

    @property
    def num_gold(self) -> int:
        return int(self.gold_times_s.size)


def score_item(pred_s: Iterable[float], gold_s: Iterable[float]) -> ItemScore:
    pred = np.sort(np.asarray(list(pred_s), dtype=np.float64))
    gold = np.sort(np.asarray(list(gold_s), dtype=np.float64))
    k = min(pred.size, gold.size)
    return ItemScore(np.abs(pred[:k] - gold[:k]), gold, int(gold.size - k), int(pred.size - k))


@dataclass
class TimestampMetrics:
    """Accumulates items; :meth:`summary` gives accuracy per tolerance, MAD, counts.

    ``bucket_fns``: name -> fn(item_score, info) -> bucket label, for per-bucket tables
    (e.g. by number of events, or by the gold time's position range).
    """

    tolerances_s: Sequence[float] = DEFAULT_TOLERANCES_S
    items: list[tuple[ItemScore, dict]] = field(default_factory=list)

    def add(self, pred_s: Iterable[float], gold_s: Iterable[float], **info) -> ItemScore:
        score = score_item(pred_s, gold_s)
        self.items.append((score, info))
        return score

    def summary(self, items: list[tuple[ItemScore, dict]] | None = None) -> dict[str, float]:
        items = self.items if items is None else items
        n_gold = sum(s.num_gold for s, _ in items)
        out: dict[str, float] = {"items": float(len(items)), "events": float(n_gold)}
        errors = np.concatenate([s.abs_errors_s for s, _ in items]) if items else np.zeros(0)
        for tol in self.tolerances_s:
            hits = float((errors <= tol + 1e-9).sum())
            out[tolerance_name(tol)] = hits / n_gold if n_gold else float("nan")
        out["mad_s"] = float(errors.mean()) if errors.size else float("nan")
        out["missing"] = float(sum(s.missing for s, _ in items))
        out["extra"] = float(sum(s.extra for s, _ in items))
        count_err = [abs(s.missing - s.extra) for s, _ in items]  # = |n_pred - n_gold|
        out["count_error"] = float(np.mean(count_err)) if count_err else float("nan")
        out["count_exact"] = float(np.mean([c == 0 for c in count_err])) if count_err else float("nan")
        return out

    def by_bucket(self, fn: Callable[[ItemScore, dict], str]) -> dict[str, dict[str, float]]:
        groups: dict[str, list] = {}
        for score, info in self.items:
            groups.setdefault(fn(score, info), []).append((score, info))
        return {k: self.summary(v) for k, v in sorted(groups.items(), key=lambda kv: _bucket_key(kv[0]))}

    def by_event_position(self, width_s: float = 4.0) -> dict[str, dict[str, float]]:
        """Per-event accuracy by where the gold event lies (0-4 s, 4-8 s, ...)."""
        groups: dict[str, list] = {}
        for score, info in self.items:
            for j, t in enumerate(score.gold_times_s):
                paired = j < score.abs_errors_s.size
                err = score.abs_errors_s[j : j + 1] if paired else np.zeros(0)
                one = ItemScore(err, np.array([t]), 0 if paired else 1, 0)
                groups.setdefault(position_bucket(t, width_s), []).append((one, info))
        return {k: self.summary(v) for k, v in sorted(groups.items(), key=lambda kv: _bucket_key(kv[0]))}


def _bucket_key(label: str) -> tuple:
    head = label.split("-")[0].rstrip("+s")
    try:
        return (0, float(head))
    except ValueError:
        return (1, label)


def by_num_events(score: ItemScore, info: dict) -> str:
    return count_bucket(score.num_gold)


def format_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str], title: str = "",
                 row_header: str = "") -> str:
    """Markdown table: one row per key of ``rows``; accuracies in %, MAD in ms."""

    def cell(col: str, v: float | None) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if col.startswith("acc@") or col in ("count_exact", "parse_failure_rate"):
            return f"{100 * v:.1f}"
        if col == "mad_s":
            return f"{1000 * v:.1f}"
        return f"{v:g}"

    names = {c: (c.replace("acc@", "acc@") + " (%)" if c.startswith("acc@") else
                 "MAD (ms)" if c == "mad_s" else c) for c in columns}
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join([row_header] + [names[c] for c in columns]) + " |")
    lines.append("|" + "---|" * (len(columns) + 1))
    for key, vals in rows.items():
        lines.append("| " + " | ".join([key] + [cell(c, vals.get(c)) for c in columns]) + " |")
    return "\n".join(lines)
