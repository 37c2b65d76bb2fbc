"""Ray Data pipeline: stream shards, decode + validate (+ featurize) per row, hand to workers.

    ds = build_dataset(data_dir, PipelineConfig(), split="train")
    for batch in ds.iter_torch_batches(batch_size=16, collate_fn=FrameCollator()): ...

Two modes (``PipelineConfig.featurize``): ``pipeline`` computes each row's log-mel in the map tasks
and ships features (:data:`FEATURE_SCHEMA`); ``worker`` ships the decoded, resampled and (when
configured) augmented float32 waveforms (:data:`WAVEFORM_SCHEMA`), and the consumer's
:class:`~framecall.data.collate.FrameCollator` featurizes the padded batch at once on its device.

Validation is ours, per row, inside ``map_batches`` (Ray Data itself only skips whole
blocks). ``bad_rows="fail"`` (default) stops the run with the shard, row and id named;
``bad_rows="skip"`` drops the row, logs it, and records it in a :class:`SkipLedger`
actor, so the driver can report every skipped id (:meth:`SkipReport`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from framecall.audio.augment import AugmentConfig, augment_waveform, next_pass, row_rng
from framecall.audio.features import FeatureParams, log_mel
from framecall.audio.io import MIN_AUDIO_SECONDS, AudioError, AudioTooShortError, decode_audio, min_samples
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
    batch_size: int = 32
    """Rows per map_batches call."""
    features: FeatureParams = field(default_factory=FeatureParams)
    """Set by the backbone adapter: mel bins, padding."""
    verify_checksums: bool = False
    """Hash every shard against the manifest before reading (slow on big corpora)."""
    num_cpus: float = 1.0
    """CPUs per featurize task; fractional values leave room for Ray Train workers."""
    reserve_resources_per_operator: bool = False
    """Ray Data's per-operator resource reservation (see ShardDataset for why it is off)."""
    read_unit_mb: int = 16
    """Bytes of parquet per read task. Ray's default (128 MiB) suits tabular rows; audio rows
    cost ~100x more CPU per byte, so big units leave CPUs idle behind one slow task."""
    augment: AugmentConfig | None = None
    """Waveform augmentation of single-clip rows (train.runner sets it for the training split only)."""
    featurize: Literal["pipeline", "worker"] = "pipeline"
    """pipeline: log-mel per row in the map tasks, rows carry features; worker: rows carry waveforms and
    the consumer (FrameCollator) featurizes each batch at once on its device (see module doc)."""

    def __post_init__(self) -> None:
        if self.featurize not in ("pipeline", "worker"):
            raise ValueError(f"PipelineConfig.featurize must be 'pipeline' or 'worker', got {self.featurize!r}")


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


def _read_parquet_in_small_units(paths: list[str], unit_mb: int):
    """``ray.data.read_parquet`` with read units of ``unit_mb``.

    Ray 2.60's V2 parquet reader bin-packs row groups into units of
    ``RAY_DATA_PARQUET_BIN_PACKING_BYTES`` (read once, when the read is planned) and
    ignores ``override_num_blocks``, so we set the variable for this call only.
    """
    import os

    import ray

    key = "RAY_DATA_PARQUET_BIN_PACKING_BYTES"
    old = os.environ.get(key)
    os.environ[key] = str(unit_mb * 2**20)
    try:
        return ray.data.read_parquet(paths, include_paths=True)
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


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


EVENT_SLACK_S = 0.04
"""An event may sit this far past the decoded end (one 40 ms audio token: it still falls in the last one)."""


class RowTimesError(ShardSchemaError):
    """Event times of a row past the end of its decoded audio."""

    reason = "event_after_audio"


class FeaturizeError(ValueError):
    """The featurizer (log-mel) failed on a row's decoded audio. Names the row."""

    reason = "featurize"


def check_times_fit(times: list[float], decoded_s: float, where: str) -> None:
    """Refuse event times past the decoded audio (the metadata's ``duration_s`` can disagree with the
    bytes); collation would otherwise clamp them silently onto the last frame."""
    late = [t for t in times if t > decoded_s + EVENT_SLACK_S]
    if late:
        raise RowTimesError(f"{where}: field 'event_times_s' has {late[0]!r} s, after the end of the decoded "
                            f"audio ({decoded_s:.3f} s; {len(late)} time(s) late)")


def featurize(samples: np.ndarray, params: FeatureParams, where: str) -> np.ndarray:
    """log-mel [M, F] of ``samples`` [N]; any featurizer failure becomes a row error naming ``where``."""
    try:
        return log_mel(samples, params, where)
    except AudioError:
        raise
    except Exception as e:  # torch/numpy errors name no row; the skip policy must see them as row errors
        raise FeaturizeError(f"{where}: log-mel failed on {samples.size} samples ({type(e).__name__}: {e})") from e


def _decode_clips(row: dict[str, Any], where: str, cfg: PipelineConfig) -> list[tuple[np.ndarray, str]]:
    """A row's clips (the row's own audio, or each of ``clips``) as (samples float32 [N], source name):
    decoded, validated, resampled and, for a single-clip row, augmented when configured."""
    check_row(row, where)
    clips = row["clips"] or []
    sources = [(c["audio"], f"{where} clip {i}") for i, c in enumerate(clips)] if clips else [(row["audio"], where)]
    out = []
    for i, (audio, src) in enumerate(sources):
        # decode_audio validates (empty, NaN/inf, length, channels) before resampling
        samples, _ = decode_audio(audio, src, target_sr=cfg.features.sample_rate, max_seconds=cfg.max_seconds)
        times = clips[i]["event_times_s"] if clips else row["event_times_s"]
        check_times_fit(times or [], samples.size / cfg.features.sample_rate, src)
        if cfg.augment is not None and cfg.augment.waveform and not clips:
            samples = _augment_row(row, samples, cfg)
        out.append((samples, src))
    return out


def _feature_columns(row: dict[str, Any], where: str, cfg: PipelineConfig) -> dict[str, Any]:
    """``pipeline`` mode: the row's log-mel [M, F] (clips concatenated in time) as FEATURE_SCHEMA columns."""
    feats = [featurize(samples, cfg.features, src) for samples, src in _decode_clips(row, where, cfg)]
    joined = feats[0] if len(feats) == 1 else np.concatenate(feats, axis=1)
    return {"features": np.ascontiguousarray(joined, dtype=np.float32).tobytes(), "num_mels": joined.shape[0],
            "num_frames": joined.shape[1], "clip_frames": [f.shape[1] for f in feats]}


def _waveform_columns(row: dict[str, Any], where: str, cfg: PipelineConfig) -> dict[str, Any]:
    """``worker`` mode: the row's clips back to back as raw float32 bytes, and each clip's length."""
    clips = _decode_clips(row, where, cfg)
    for samples, src in clips:  # the consumer featurizes a whole batch: refuse here what log_mel would
        if samples.size < min_samples(cfg.features.sample_rate):
            raise AudioTooShortError(src, f"{samples.size} samples at {cfg.features.sample_rate} Hz after "
                                          f"augmentation, shorter than {MIN_AUDIO_SECONDS * 1000:.0f} ms")
    return {"waveform": b"".join(np.ascontiguousarray(s, dtype=np.float32).tobytes() for s, _ in clips),
            "clip_samples": [int(s.size) for s, _ in clips]}


def _augment_row(row: dict[str, Any], samples: np.ndarray, cfg: PipelineConfig) -> np.ndarray:
    """Augmented samples [N']; a speed change rescales the row's event times and duration in place."""
    aug, sr = cfg.augment, cfg.features.sample_rate
    assert aug is not None
    rng = row_rng(aug.seed, str(row["id"]), next_pass(aug.seed, str(row["id"])))
    samples, scale, _ = augment_waveform(samples, sr, aug, rng)
    if scale != 1.0:
        row["event_times_s"] = [min(t * scale, samples.size / sr) for t in row["event_times_s"]]
        row["duration_s"] = samples.size / sr
    return samples


_ROW_FIELDS = [
    ("id", pa.string()), ("task", pa.string()), ("split", pa.string()), ("prompt", pa.string()),
    ("target_text", pa.string()), ("answer", pa.string()), ("duration_s", pa.float64()),
    ("num_events", pa.int32()), ("event_times_s", pa.list_(pa.float64())), ("query_index", pa.int32()),
]
FEATURE_SCHEMA = pa.schema(
    _ROW_FIELDS + [
        # raw float32 bytes of the log-mel [num_mels, num_frames], C order: Arrow's ragged tensor
        # conversion cost ~1 ms/row here, as much as featurizing
        ("features", pa.binary()), ("num_mels", pa.int32()), ("num_frames", pa.int32()),
        ("clip_frames", pa.list_(pa.int32())), ("meta", pa.string()), ("shard", pa.string()),
    ]
)
WAVEFORM_SCHEMA = pa.schema(
    _ROW_FIELDS + [
        # raw float32 bytes of the row's clips [sum(clip_samples)] back to back, at features.sample_rate
        ("waveform", pa.binary()), ("clip_samples", pa.list_(pa.int64())), ("meta", pa.string()),
        ("shard", pa.string()),
    ]
)


def features_from_bytes(data: bytes, num_mels: int, num_frames: int) -> np.ndarray:
    """The ``features`` column back to float32 [num_mels, num_frames] (no copy)."""
    return np.frombuffer(data, dtype=np.float32).reshape(int(num_mels), int(num_frames))


def waveforms_from_bytes(data: bytes, clip_samples: Any) -> list[np.ndarray]:
    """The ``waveform`` column back to one float32 array [N_c] per clip (views, no copy)."""
    flat = np.frombuffer(data, dtype=np.float32)
    ends = np.cumsum(np.asarray(clip_samples, dtype=np.int64))
    if ends.size == 0 or ends[-1] != flat.size:
        raise ValueError(f"waveform column holds {flat.size} samples, clip_samples sum to "
                         f"{int(ends[-1]) if ends.size else 0}")
    return [flat[end - n : end] for end, n in zip(ends.tolist(), np.asarray(clip_samples).tolist())]


def featurize_batch(
    table: pa.Table, cfg: PipelineConfig, split: str | None = None, ledger: Any = None
) -> pa.Table:
    """map_batches UDF: shard rows in; :data:`FEATURE_SCHEMA` rows out, or :data:`WAVEFORM_SCHEMA` rows
    with ``featurize="worker"`` (see module doc)."""
    schema, columns_of = (FEATURE_SCHEMA, _feature_columns) if cfg.featurize == "pipeline" \
        else (WAVEFORM_SCHEMA, _waveform_columns)
    out: dict[str, list] = {name: [] for name in schema.names}
    skipped = []
    for row in table.to_pylist():
        if split is not None and row["split"] != split:
            continue
        path = row.get("path", "<shard>")
        where = f"{path} (id={row.get('id')!r})"
        try:
            payload = columns_of(row, where, cfg)
        except (AudioError, ShardSchemaError, FeaturizeError) as e:
            located = describe_row(path, row.get("id"))  # error path only: reads the id column
            if cfg.bad_rows == "fail":
                raise BadRowError(f"bad row {located}: {e}") from e
            log.warning("skipping %s: %s", located, e)
            skipped.append({"shard": path, "id": str(row.get("id")), "row": located,
                            "reason": getattr(e, "reason", "schema"), "detail": str(e)})
            continue
        for k in OUTPUT_COLUMNS:
            out[k].append(row[k])
        out["event_times_s"].append(row["event_times_s"])
        out["query_index"].append(row["query_index"])
        for k, v in payload.items():
            out[k].append(v)
        out["meta"].append(row["meta"])
        out["shard"].append(path)
    if skipped and ledger is not None:
        import ray

        ray.get(ledger.record.remote(skipped))  # wait: a lost report would be a silent drop
    return pa.Table.from_pydict(out, schema=schema)


class ShardDataset:
    """A Ray Dataset over featurized shard rows, with its skip ledger.

    ``dataset`` is the ``ray.data.Dataset``; ``skip_report()`` returns what was skipped so far.
    """

    def __init__(self, data_dir: str | Path, cfg: PipelineConfig | None = None, split: str | None = None):

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
        ds = _read_parquet_in_small_units(self.paths, self.cfg.read_unit_mb)
        if split is not None:
            # an expression filter Ray Data pushes into the Parquet scan: the rows of other splits
            # (and their audio bytes) are never materialized in Python; featurize_batch re-checks
            ds = ds.filter(expr=f"split == {split!r}")
        # Ray Data reserves a share of the CPUs for each operator; on a 2-CPU node that
        # leaves one CPU to featurize while the read operator's share idles (measured:
        # 545 vs 799 rows/s in the map stage). This Dataset only, not the global context.
        ds.context.op_resource_reservation_enabled = self.cfg.reserve_resources_per_operator
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

    Yields the tables of :func:`featurize_batch` (features or waveforms, by ``cfg.featurize``), one per row group.
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
