"""Ray Data pipeline: stream shards, decode + validate + featurize per row, hand to workers.

    ds = build_dataset(data_dir, PipelineConfig(), split="train")
    for batch in ds.iter_torch_batches(batch_size=16, collate_fn=FrameCollator()): ...

Validation is ours, per row, inside ``map_batches`` (Ray Data itself only skips whole
blocks). ``bad_rows="fail"`` (default) stops the run with the shard, row and id named;
``bad_rows="skip"`` drops the row, logs it, and records it in a :class:`SkipLedger`
actor, so the driver can report every skipped id (:meth:`SkipReport`).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from framecall.audio.features import FeatureParams, log_mel
from framecall.audio.io import AudioError, decode_audio, validate_samples
from framecall.data.schema import ShardSchemaError, check_row, check_schema
from framecall.data.shards import list_shards

log = logging.getLogger(__name__)

# what the featurizer passes on; the audio bytes are dropped once decoded
OUTPUT_COLUMNS = ("id", "task", "split", "prompt", "target_text", "answer", "duration_s", "num_events")


@dataclass
class PipelineConfig:
    """Decode / validate / featurize settings for the Ray Data pipeline."""

    bad_rows: Literal["fail", "skip"] = "fail"
    """fail: stop on the first bad row, naming shard, row and id; skip: drop, count and report it."""
    max_seconds: float | None = 120.0
    """Refuse audio longer than this (None: no limit)."""
    batch_size: int = 8
    """Rows per map_batches call."""
    features: FeatureParams = field(default_factory=FeatureParams)
    """Set by the backbone adapter: mel bins, padding."""
    verify_checksums: bool = False
    """Hash every shard against the manifest before reading (slow on big corpora)."""
    num_cpus: float = 1.0
    """CPUs per featurize task; fractional values leave room for Ray Train workers."""


class BadRowError(ValueError):
    """A row failed validation under the ``fail`` policy. Names shard, row and id."""


def _row_index(path: str, row_id: str) -> int | None:
    """Position of ``row_id`` in its shard, for error messages only (reads one column)."""
    try:
        ids = pq.read_table(path, columns=["id"])["id"].to_pylist()
        return ids.index(row_id)
    except (OSError, ValueError, pa.ArrowException):
        return None


def describe_row(path: str, row_id: str) -> str:
    idx = _row_index(path, row_id)
    return f"{path} row {idx if idx is not None else '?'} (id={row_id!r})"


def _ledger_class():
    import ray

    @ray.remote(num_cpus=0)
    class SkipLedger:
        """Collects every row the ``skip`` policy dropped: (shard, id, reason, detail)."""

        def __init__(self) -> None:
            self.rows: list[dict[str, str]] = []

        def record(self, rows: list[dict[str, str]]) -> int:
            self.rows.extend(rows)
            return len(self.rows)

        def report(self) -> list[dict[str, str]]:
            return list(self.rows)

    return SkipLedger


@dataclass
class SkipReport:
    """What the ``skip`` policy dropped. ``rows``: one dict per skipped row."""

    rows: list[dict[str, str]]

    @property
    def count(self) -> int:
        return len(self.rows)

    def by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["reason"]] = out.get(r["reason"], 0) + 1
        return out


def _decode_row(row: dict[str, Any], where: str, cfg: PipelineConfig) -> tuple[np.ndarray, list[int]]:
    """Features [M, F] of a row (clips concatenated in time) and each clip's frame count."""
    check_row(row, where)
    clips = row["clips"] or []
    sources = [(c["audio"], f"{where} clip {i}") for i, c in enumerate(clips)] if clips else [(row["audio"], where)]
    feats, frames = [], []
    for audio, src in sources:
        samples, sr = decode_audio(audio, src, target_sr=cfg.features.sample_rate, max_seconds=cfg.max_seconds)
        validate_samples(samples, sr, src, cfg.max_seconds)
        f = log_mel(samples, cfg.features)
        feats.append(f)
        frames.append(f.shape[1])
    return (feats[0] if len(feats) == 1 else np.concatenate(feats, axis=1)), frames


def featurize_batch(
    table: pa.Table, cfg: PipelineConfig, split: str | None = None, ledger: Any = None
) -> dict[str, np.ndarray]:
    """map_batches UDF: pyarrow rows in, featurized numpy columns out (see module doc)."""
    rows = table.to_pylist()
    out: dict[str, list] = {k: [] for k in (*OUTPUT_COLUMNS, "event_times_s", "query_index", "features",
                                            "clip_frames", "meta", "shard")}
    skipped = []
    for row in rows:
        if split is not None and row["split"] != split:
            continue
        path = row.get("path", "<shard>")
        where = f"{path} (id={row.get('id')!r})"
        try:
            feats, frames = _decode_row(row, where, cfg)
        except (AudioError, ShardSchemaError) as e:
            reason = getattr(e, "reason", "schema")
            if cfg.bad_rows == "fail":
                raise BadRowError(f"bad row {describe_row(path, row.get('id'))}: {e}") from e
            log.warning("skipping %s: %s", describe_row(path, row.get("id")), e)
            skipped.append({"shard": path, "id": str(row.get("id")), "reason": reason, "detail": str(e)})
            continue
        for k in OUTPUT_COLUMNS:
            out[k].append(row[k])
        out["event_times_s"].append(np.asarray(row["event_times_s"], dtype=np.float64))
        out["query_index"].append(-1 if row["query_index"] is None else int(row["query_index"]))
        out["features"].append(feats)
        out["clip_frames"].append(np.asarray(frames, dtype=np.int64))
        out["meta"].append(row["meta"])
        out["shard"].append(path)
    if skipped and ledger is not None:
        import ray

        ray.get(ledger.record.remote(skipped))  # wait: a lost report would be a silent drop
    result: dict[str, np.ndarray] = {}
    for k, v in out.items():
        if k in ("features", "event_times_s", "clip_frames"):
            arr = np.empty(len(v), dtype=object)
            arr[:] = v
            result[k] = arr
        else:
            result[k] = np.asarray(v)
    return result


class ShardDataset:
    """A Ray Dataset over featurized shard rows, with its skip ledger.

    ``dataset`` is the ``ray.data.Dataset``; ``skip_report()`` returns what was skipped so far.
    """

    def __init__(self, data_dir: str | Path, cfg: PipelineConfig | None = None, split: str | None = None):
        import ray

        self.cfg = cfg or PipelineConfig()
        self.data_dir = Path(data_dir)
        paths = list_shards(self.data_dir, verify=self.cfg.verify_checksums)
        for p in paths:  # schema errors name the shard before any task starts
            check_schema(pq.read_schema(p), str(p))
        self.paths = [str(p.resolve()) for p in paths]
        self.split = split
        self._ledger = None
        if self.cfg.bad_rows == "skip":
            self._ledger = _ledger_class().options(name=f"framecall-skips-{uuid.uuid4().hex[:8]}").remote()
        ds = ray.data.read_parquet(self.paths, include_paths=True)
        self.dataset = ds.map_batches(
            featurize_batch,
            batch_format="pyarrow",
            batch_size=self.cfg.batch_size,
            fn_kwargs={"cfg": self.cfg, "split": split, "ledger": self._ledger},
            num_cpus=self.cfg.num_cpus,
        )

    def skip_report(self) -> SkipReport:
        if self._ledger is None:
            return SkipReport([])
        import ray

        return SkipReport(ray.get(self._ledger.report.remote()))


def build_dataset(data_dir: str | Path, cfg: PipelineConfig | None = None, split: str | None = None) -> ShardDataset:
    return ShardDataset(data_dir, cfg, split)


def iterate_rows_locally(data_dir: str | Path, cfg: PipelineConfig | None = None, split: str | None = None):
    """The same decode + featurize in one process, no Ray (benchmark baseline, small tools).

    Yields the featurized column dicts of :func:`featurize_batch`, one per row group.
    """
    cfg = cfg or PipelineConfig()
    for path in list_shards(data_dir, verify=cfg.verify_checksums):
        pf = pq.ParquetFile(path)
        check_schema(pf.schema_arrow, str(path))
        for i in range(pf.num_row_groups):
            for batch in pf.read_row_group(i).to_batches(max_chunksize=cfg.batch_size):
                table = pa.Table.from_batches([batch])
                table = table.append_column("path", pa.array([str(Path(path).resolve())] * table.num_rows))
                yield featurize_batch(table, cfg, split)


def meta_of(column_value: Any) -> dict[str, Any]:
    return json.loads(column_value)
