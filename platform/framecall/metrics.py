"""Timestamp metrics: accuracy within tolerances, mean absolute deviation, count error,
and per-bucket tables in the layouts of the paper's tables.

Pairing of predictions with gold events (``pairing``), the four the authors report:

- ``positional`` (the strict one): both sorted, the i-th predicted with the i-th gold.
- ``greedy``: gold events in time order, each takes the nearest prediction still free.
- ``hungarian_l1``: the assignment of least total |error| (scipy ``linear_sum_assignment``).
- ``hungarian_acc``: for each tolerance, the assignment with the most hits within it (their
  "accuracy-optimal"); its MAD is the L1-optimal assignment's.

A gold event without a predicted partner is a *miss* (wrong at every tolerance, never dropped);
predictions beyond the gold count are *extra* and reported.

Conventions (``convention``):

- ``framecall``: errors compared with the tolerance as computed; MAD over paired events only
  (``missing`` says how many had none); every prediction may be paired.
- ``paper``: the authors' code: predictions and errors rounded to 1 ms before the comparison
  (so an error up to tol + 0.5 ms counts), predictions beyond the gold count dropped (first n
  in time order), and a missed event charged half the audio length in MAD (MAD over all gold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

DEFAULT_TOLERANCES_S = (0.02, 0.04, 0.10)
COUNT_BUCKETS = ((1, 5), (6, 10), (11, 15), (16, 20), (21, 25), (26, None))
PAIRINGS = ("positional", "greedy", "hungarian_l1", "hungarian_acc")
CONVENTIONS = ("framecall", "paper")


def check_pairing(pairing: str, convention: str = "framecall") -> None:
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; valid: {list(PAIRINGS)}")
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown metric convention {convention!r}; valid: {list(CONVENTIONS)}")


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
    """One item's pairing, per gold event (in time order)."""

    errors_by_gold_s: np.ndarray
    """[n_gold] absolute error of each gold event's partner; NaN for a miss."""
    gold_times_s: np.ndarray  # [n_gold], sorted
    extra: int
    """Predictions beyond the gold count."""
    hits_by_tol: dict[float, np.ndarray] | None = None
    """tolerance -> [n_gold] bool, when the pairing depends on the tolerance (hungarian_acc)."""
    miss_charge_s: float | None = None
    """MAD charge of a missed event (paper convention: half the audio length); None: left out of MAD."""

    @property
    def num_gold(self) -> int:
        return int(self.gold_times_s.size)

    @property
    def abs_errors_s(self) -> np.ndarray:
        """[n_paired] errors of the paired gold events."""
        return self.errors_by_gold_s[~np.isnan(self.errors_by_gold_s)]

    @property
    def missing(self) -> int:
        return int(np.isnan(self.errors_by_gold_s).sum())

    def hits(self, tol_s: float) -> np.ndarray:
        """[n_gold] bool: the gold event's partner is within ``tol_s`` (a miss never is)."""
        if self.hits_by_tol is not None and tol_s in self.hits_by_tol:
            return self.hits_by_tol[tol_s]
        with np.errstate(invalid="ignore"):
            return self.errors_by_gold_s <= tol_s + 1e-9  # NaN (a miss) compares False

    def event(self, j: int) -> ItemScore:
        """Gold event j alone (for per-position tables)."""
        hits = None if self.hits_by_tol is None else {t: h[j:j + 1] for t, h in self.hits_by_tol.items()}
        return ItemScore(self.errors_by_gold_s[j:j + 1], self.gold_times_s[j:j + 1], 0, hits, self.miss_charge_s)


def _partners(dist: np.ndarray, pairing: str) -> np.ndarray:
    """dist [n_gold, n_pred] -> [n_gold] index of each gold event's prediction, -1 for none."""
    n_gold, n_pred = dist.shape
    partner = np.full(n_gold, -1, dtype=np.int64)
    if n_pred == 0 or n_gold == 0:
        return partner
    if pairing == "positional":
        k = min(n_gold, n_pred)
        partner[:k] = np.arange(k)
    elif pairing == "greedy":
        free = np.ones(n_pred, dtype=bool)
        for j in range(n_gold):
            if not free.any():
                break
            p = int(np.argmin(np.where(free, dist[j], np.inf)))  # first on ties, like theirs
            partner[j], free[p] = p, False
    else:  # hungarian_l1; hungarian_acc uses it for MAD
        rows, cols = linear_sum_assignment(dist)
        partner[rows] = cols
    return partner


def _acc_optimal_hits(dist: np.ndarray, tolerances_s: Sequence[float]) -> dict[float, np.ndarray]:
    """Per tolerance: [n_gold] hits of the assignment maximising the hits (cost 1 outside the tolerance)."""
    out = {}
    for tol in tolerances_s:
        hits = np.zeros(dist.shape[0], dtype=bool)
        if dist.size:
            within = dist <= tol + 1e-9
            rows, cols = linear_sum_assignment((~within).astype(np.float64))
            hits[rows] = within[rows, cols]
        out[tol] = hits
    return out


def score_item(pred_s: Iterable[float], gold_s: Iterable[float], pairing: str = "positional",
               convention: str = "framecall", duration_s: float | None = None,
               tolerances_s: Sequence[float] = DEFAULT_TOLERANCES_S) -> ItemScore:
    """Pair one item's predictions with its gold times. ``duration_s`` (the audio length) is
    needed by the paper convention, which charges a miss half of it in MAD."""
    check_pairing(pairing, convention)
    pred = np.sort(np.asarray(list(pred_s), dtype=np.float64))
    gold = np.sort(np.asarray(list(gold_s), dtype=np.float64))
    extra = max(0, pred.size - gold.size)
    charge = None
    if convention == "paper":
        if duration_s is None or not duration_s >= 0:
            raise ValueError(f"the paper convention charges a miss half the audio length: duration_s must be "
                             f"given (>= 0), got {duration_s!r}")
        pred, charge = np.round(pred[: gold.size] * 1000) / 1000, duration_s / 2
    dist = np.abs(gold[:, None] - pred[None, :])  # [n_gold, n_pred]
    if convention == "paper":
        dist = np.round(dist * 1000) / 1000
    partner = _partners(dist, pairing)
    errors = np.full(gold.size, np.nan)  # [n_gold]
    paired = partner >= 0
    errors[paired] = dist[np.flatnonzero(paired), partner[paired]]
    hits = _acc_optimal_hits(dist, tolerances_s) if pairing == "hungarian_acc" else None
    return ItemScore(errors, gold, extra, hits, charge)


@dataclass
class TimestampMetrics:
    """Accumulates items; :meth:`summary` gives accuracy per tolerance, MAD, counts.

    ``pairing`` and ``convention``: see the module docstring. ``bucket_fns``: name ->
    fn(item_score, info) -> bucket label, for per-bucket tables (e.g. by number of events).
    """

    tolerances_s: Sequence[float] = DEFAULT_TOLERANCES_S
    items: list[tuple[ItemScore, dict]] = field(default_factory=list)
    pairing: str = "positional"
    convention: str = "framecall"

    def __post_init__(self) -> None:
        check_pairing(self.pairing, self.convention)

    def add(self, pred_s: Iterable[float], gold_s: Iterable[float], duration_s: float | None = None,
            **info) -> ItemScore:
        score = score_item(pred_s, gold_s, self.pairing, self.convention, duration_s, self.tolerances_s)
        self.items.append((score, info))
        return score

    def summary(self, items: list[tuple[ItemScore, dict]] | None = None) -> dict[str, float]:
        items = self.items if items is None else items
        n_gold = sum(s.num_gold for s, _ in items)
        out: dict[str, float] = {"items": float(len(items)), "events": float(n_gold)}
        for tol in self.tolerances_s:
            hits = float(sum(int(s.hits(tol).sum()) for s, _ in items))
            out[tolerance_name(tol)] = hits / n_gold if n_gold else float("nan")
        out["mad_s"] = _mad(items)
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
                groups.setdefault(position_bucket(t, width_s), []).append((score.event(j), info))
        return {k: self.summary(v) for k, v in sorted(groups.items(), key=lambda kv: _bucket_key(kv[0]))}


def _mad(items: list[tuple[ItemScore, dict]]) -> float:
    """Mean absolute deviation: over paired events, or over all gold with misses charged (paper)."""
    errors = [s.abs_errors_s for s, _ in items]
    charged = [np.full(s.missing, s.miss_charge_s) for s, _ in items if s.miss_charge_s is not None]
    allv = np.concatenate(errors + charged) if items else np.zeros(0)
    return float(allv.mean()) if allv.size else float("nan")


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
    """Markdown table: one row per key of ``rows``; accuracies in %, MAD in ms. A column
    ``"<pairing>/<metric>"`` (e.g. ``hungarian_acc/acc@20ms``) is headed with the pairing."""

    def cell(col: str, v: float | None) -> str:
        base = col.rsplit("/", 1)[-1]
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if base.startswith("acc@") or base in ("count_exact", "parse_failure_rate"):
            return f"{100 * v:.1f}"
        if base == "mad_s":
            return f"{1000 * v:.1f}"
        return f"{v:g}"

    def name(col: str) -> str:
        prefix, _, base = col.rpartition("/")
        label = base + " (%)" if base.startswith("acc@") else "MAD (ms)" if base == "mad_s" else base
        return f"{label} {prefix}" if prefix else label

    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join([row_header] + [name(c) for c in columns]) + " |")
    lines.append("|" + "---|" * (len(columns) + 1))
    for key, vals in rows.items():
        lines.append("| " + " | ".join([key] + [cell(c, vals.get(c)) for c in columns]) + " |")
    return "\n".join(lines)
