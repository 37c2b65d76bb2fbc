"""Offline batch prediction without a server: Ray Data reads shards (or the rows of a plain-audio
input, :mod:`framecall.data.inputs`), an actor pool of :class:`~framecall.inference.FrameLocalizer`
(the Serve engine, same batching and long-audio stitching) predicts, and each input row gets one
result file: ``<id>.json`` (times and confidences; with ``words`` when the row has a transcript),
``.TextGrid``, ``.ctm``, ``.srt`` or ``.vtt`` (alignments of rows with a transcript: each word's start and
confidence from the head, its end at the energy offset, as :meth:`FrameLocalizer.align`), plus ``_index.json`` (id -> file or failure, and
failures counted by reason). A bad row fails alone (``bad_rows=skip``) or stops the run naming it.

Memory: a row read from an audio file longer than one window (``chunk_seconds``), or of unknown
length, with no transcript and no segment, is streamed (:class:`~framecall.audio.io.AudioWindows`:
decoded, mixed down and resampled window by window, ``batch_size`` windows per forward pass, the
small per-window curves stitched and decoded once): O(window x batch_size), whatever its length.
Other rows hold their decoded 16 kHz audio (never more than ``max_audio_seconds``; alignment rows need
it for the energy-based word ends), featurized ``batch_size`` (question x chunk) rows at a time.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from framecall.audio.io import DEFAULT_MAX_SECONDS, AudioError, AudioWindows, decode_audio
from framecall.config import to_dict
from framecall.data.inputs import UNKNOWN_COUNT, InputItem
from framecall.inference import SAMPLE_RATE, FrameLocalizer, Query, QueryError, align_words, check_query
from framecall.serving import OUTPUT_FORMATS, format_alignment

SUFFIX = {"json": ".json", "textgrid": ".TextGrid", "ctm": ".ctm", "srt": ".srt", "vtt": ".vtt"}
INDEX = "_index.json"
"""The results index beside the result files (a row id may not overwrite it)."""


class PredictError(RuntimeError):
    """A row that could not be predicted, with the bad_rows=fail policy."""


@dataclass
class PredictConfig:
    checkpoint: str
    output: str
    format: str = "json"
    """json | textgrid | ctm | srt | vtt (all but json need a transcript: words_all rows, list/lhotse/hf)."""
    num_events: str = "from-data"
    """from-data: the row's num_events (the question states it) | estimate: Lam(T) of a Poisson head."""
    bad_rows: str = "fail"
    """fail: stop at the first bad row, naming it | skip: record it in the results index and go on."""
    registry_uri: str | None = None
    """MLflow server of a models:/ checkpoint (default: MLFLOW_TRACKING_URI of the driver)."""
    batch_size: int = 8
    """Rows per actor call, and the most (question x audio chunk) rows of one forward pass."""
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    """GPUs each actor holds (fractions below 1 share a GPU); 0 on CPU clusters."""
    device: str = "auto"
    """auto (the GPU the actor was given when gpus_per_actor > 0, else cpu) | cpu | cuda | cuda:N."""
    dtype: str = "auto"
    """auto (bf16 on a CUDA device that supports it, else fp32) | float32 | bfloat16 | float16."""
    chunk_seconds: float | None = 30.0
    """Audio window of one forward row; longer recordings are cut in overlapping windows whose curves
    are stitched (bounded memory for hour-long files). None: the backbone's limit (Omni: one pass)."""
    chunk_overlap_seconds: float = 4.0
    max_audio_seconds: float = DEFAULT_MAX_SECONDS
    """Longer recordings are refused by name (decoding reads forward in blocks and stops past it)."""
    progress_bars: str = "auto"
    """Ray Data's bars and the [framecall] count lines: on | off | auto (on at a terminal)."""

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"format must be one of {list(OUTPUT_FORMATS)}, got {self.format!r}")
        if self.num_events not in ("from-data", "estimate"):
            raise ValueError(f"num_events must be from-data or estimate, got {self.num_events!r}")
        if self.bad_rows not in ("fail", "skip"):
            raise ValueError(f"bad_rows must be fail or skip, got {self.bad_rows!r}")
        if self.chunk_seconds is not None and self.chunk_seconds <= self.chunk_overlap_seconds:
            raise ValueError("chunk_seconds must exceed chunk_overlap_seconds")
        if self.progress_bars not in ("auto", "on", "off"):
            raise ValueError(f"progress_bars must be auto, on or off, got {self.progress_bars!r}")
        from framecall.runtime import DTYPES, check_resources

        check_resources("cpus_per_actor, gpus_per_actor", self.cpus_per_actor, self.gpus_per_actor)
        if self.dtype not in ("auto", *DTYPES):
            raise ValueError(f"dtype {self.dtype!r} unknown; valid: auto, {', '.join(DTYPES)}")


def output_name(row_id: str, suffix: str) -> str:
    """The result file name of a row: its id, which must be one plain file name (no directory part,
    no ``.``/``..``, no NUL, at most 200 characters), so no id writes outside the output directory."""
    bad = (row_id in ("", ".", "..") or any(c in row_id for c in "/\\\x00") or len(row_id) > 200
           or row_id != row_id.strip() or row_id + suffix == INDEX)
    if bad:
        raise PredictError(f"id={row_id[:200]!r}: not usable as a result file name (a row id must be one "
                           "plain file name: no '/', '\\', '..', NUL, edge spaces, over 200 characters)")
    return row_id + suffix


class RowFailure(Exception):
    """One row that cannot be predicted; ``reason`` counts it in the index (an AudioError's reason,
    question, id, no_transcript, model)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def row_source(batch: dict[str, np.ndarray], i: int, rid: str) -> str:
    """What names row ``i`` in messages: the input's own source, else the shard file and id."""
    if "source" in batch:
        return str(batch["source"][i])
    return f"{batch['path'][i]} (id={rid})" if "path" in batch else f"id={rid}"


def cut_segment(samples: np.ndarray, offset_s: float, duration_s: float, source: str) -> np.ndarray:
    """The [offset, offset + duration) part of a 16 kHz recording (a lhotse cut); NaN duration: to the end."""
    lo = int(round(offset_s * SAMPLE_RATE))
    hi = samples.size if np.isnan(duration_s) else lo + int(round(duration_s * SAMPLE_RATE))
    if lo >= samples.size:
        raise RowFailure("empty", f"{source}: the segment starts at {offset_s:.3f} s, after the recording's end "
                                  f"({samples.size / SAMPLE_RATE:.3f} s)")
    return samples[lo:hi]


class PredictActor:
    """One replica of the model in the Ray Data actor pool. A batch's rows fail alone: each gets a
    status (ok, or ``skipped: <message naming the row>``) and a reason; bad_rows=fail raises at the first."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = PredictConfig(**cfg)
        if self.cfg.registry_uri:  # a models:/ checkpoint is read from this server
            import os

            os.environ["MLFLOW_TRACKING_URI"] = self.cfg.registry_uri
        from framecall.runtime import placed_device

        self.engine = FrameLocalizer.from_pretrained(self.cfg.checkpoint, chunk_seconds=self.cfg.chunk_seconds,
                                                     chunk_overlap_seconds=self.cfg.chunk_overlap_seconds,
                                                     device=placed_device(self.cfg.gpus_per_actor, self.cfg.device),
                                                     dtype=self.cfg.dtype)
        self.out = Path(self.cfg.output)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        ids = [str(x) for x in batch["id"]]
        status, reasons, files = ["ok"] * len(ids), [""] * len(ids), [""] * len(ids)
        queries: dict[int, Query] = {}
        streams: dict[int, AudioWindows] = {}
        for i, rid in enumerate(ids):
            try:
                queries[i] = self._query(batch, i, rid, streams)
            except RowFailure as e:
                status[i], reasons[i] = self._failed(e)
        results = self._predict({i: q for i, q in queries.items() if i not in streams}, batch, ids)
        for i, result in [*results.items(), *((i, self._predict_stream(queries[i], w)) for i, w in streams.items())]:
            try:
                if isinstance(result, RowFailure):
                    raise result
                files[i] = self._write(batch, i, ids[i], result, queries[i].samples)
            except RowFailure as e:
                status[i], reasons[i] = self._failed(e)
        return {"id": ids, "status": status, "reason": reasons, "file": files}

    def _failed(self, e: RowFailure) -> tuple[str, str]:
        if self.cfg.bad_rows == "fail":
            raise PredictError(str(e)) from None
        return f"skipped: {e}", e.reason

    def _query(self, batch: dict[str, np.ndarray], i: int, rid: str, streams: dict[int, AudioWindows]) -> Query:
        """Row ``i`` -> its query: a usable id, decoded audio (its segment), a question the model answers.
        A long file to be streamed (:meth:`_windows`) goes in ``streams[i]``; its query holds no samples."""
        source = row_source(batch, i, rid)
        if "problem" in batch and batch["problem"][i]:
            raise RowFailure("question", str(batch["problem"][i]))
        try:
            output_name(rid, SUFFIX[self.cfg.format])
        except PredictError as e:
            raise RowFailure("id", str(e)) from None
        path = str(batch["audio_path"][i]) if "audio_path" in batch else ""
        if path and Path(path).is_file() and Path(path).stat().st_size == 0:  # libsndfile says only "unknown format"
            raise RowFailure("empty", f"{source}: audio file is empty (0 bytes)")
        try:
            stream = self._windows(batch, i, path, source)
            samples = np.zeros(0, np.float32) if stream else decode_audio(
                path or bytes(batch["audio"][i]), source=source, max_seconds=self.cfg.max_audio_seconds)[0]
        except AudioError as e:
            raise RowFailure(e.reason, str(e)) from None
        if stream:
            streams[i] = stream
        elif "offset_s" in batch:
            samples = cut_segment(samples, float(batch["offset_s"][i]), float(batch["duration_s"][i]), source)
        prompt = str(batch["prompt"][i])
        n = int(batch["num_events"][i]) if self.cfg.num_events == "from-data" else None
        n = None if n == UNKNOWN_COUNT else n
        try:
            check_query(self.engine.head, self.engine.tasks, prompt, n)
        except QueryError as e:
            raise RowFailure("question", f"{source}: {e}") from None
        return Query(samples, prompt, n)

    def _windows(self, batch: dict[str, np.ndarray], i: int, path: str, source: str) -> AudioWindows | None:
        """Row ``i``'s file as windows when it is worth streaming: a file (not bytes) longer than one window
        or of unknown length, the whole recording (no segment), no transcript. Its header is checked here."""
        segment = "offset_s" in batch and (float(batch["offset_s"][i]) != 0 or not np.isnan(batch["duration_s"][i]))
        if not path or self.engine.window is None or segment or json.loads(batch["meta"][i] or "{}").get("transcript"):
            return None
        windows = AudioWindows(path, self.engine.window, self.engine.window_step(), source=source,
                               max_seconds=self.cfg.max_audio_seconds)
        long = windows.declared_s is None or windows.declared_s * SAMPLE_RATE > self.engine.window
        return windows if long else None

    def _predict_stream(self, query: Query, windows: AudioWindows) -> dict[str, Any] | RowFailure:
        """A streamed row's result, or its failure (bad audio found while reading, scores not finite)."""
        try:
            return self.engine.predict_windows(windows, query, max_rows=self.cfg.batch_size)
        except AudioError as e:
            return RowFailure(e.reason, str(e))
        except ValueError as e:
            return RowFailure("model", f"{windows.source}: {e}")

    def _predict(self, queries: dict[int, Query], batch, ids) -> dict[int, dict[str, Any] | RowFailure]:
        """All queries in chunked forward passes (at most batch_size rows each); if the batch fails
        (scores not finite), each query alone, so one bad recording fails only its row."""
        order = list(queries)
        try:
            results = self.engine.predict([queries[i] for i in order], max_rows=self.cfg.batch_size)
            return dict(zip(order, results))
        except ValueError:
            out: dict[int, dict[str, Any] | RowFailure] = {}
            for i in order:
                try:
                    out[i] = self.engine.predict([queries[i]], max_rows=self.cfg.batch_size)[0]
                except ValueError as e:
                    out[i] = RowFailure("model", f"{row_source(batch, i, ids[i])}: {e}")
            return out

    def _write(self, batch: dict[str, np.ndarray], i: int, rid: str, result: dict[str, Any],
               samples: np.ndarray) -> str:
        """Write row ``i``'s result file -> its path."""
        meta = json.loads(batch["meta"][i] or "{}")
        transcript = meta.get("transcript")
        # the Python API's words: start confidences, ends at the energy offset (silences between words show)
        words = (align_words(transcript.split(), result["times_s"], samples, result["confidences"], ends="energy")
                 if transcript else None)
        if self.cfg.format == "json":
            body = json.dumps({"id": rid, "prompt": str(batch["prompt"][i]), **result,
                               **({"words": words} if words is not None else {}), "model": self.engine.info["name"]})
        elif words is None:
            raise RowFailure("no_transcript", f"{row_source(batch, i, rid)}: format {self.cfg.format} needs a "
                                              "transcript (words_all rows, list/lhotse/hf transcripts)")
        else:
            body = format_alignment(words, self.cfg.format, samples.size / SAMPLE_RATE, utterance=rid)
        path = self.out / output_name(rid, SUFFIX[self.cfg.format])
        path.write_text(body)
        return str(path)


SHARD_COLUMNS = ["id", "prompt", "audio", "num_events", "meta", "task"]


def items_table(items: list[InputItem]) -> pa.Table:
    """Plain-audio items as rows the actor reads like shard rows (audio by path or bytes, a source
    naming the item, the lhotse segment; NaN duration: to the end)."""
    def col(name: str) -> list:
        return [getattr(it, name) for it in items]

    return pa.table({
        "id": col("id"), "prompt": col("question"), "num_events": pa.array(col("num_events"), pa.int64()),
        "audio": pa.array(col("audio"), pa.binary()), "audio_path": col("audio_path"), "source": col("source"),
        "meta": [json.dumps({"transcript": it.transcript} if it.transcript else {}) for it in items],
        "offset_s": pa.array(col("offset_s"), pa.float64()),
        "duration_s": pa.array([float("nan") if d is None else d for d in col("duration_s")], pa.float64()),
        "problem": col("problem")})


def _dataset(data: str | list[str] | None, items: list[InputItem] | None, batch_size: int):
    """-> (Ray Dataset, row count): the items in blocks of ``batch_size`` rows (so every actor gets
    work), or the shards' rows streamed by read_parquet."""
    import ray.data

    from framecall.data.shards import list_shards

    if items is not None:
        table = items_table(items)
        blocks = [table.slice(lo, batch_size) for lo in range(0, table.num_rows, batch_size)]
        return ray.data.from_arrow(blocks), table.num_rows
    files = [str(p) for p in list_shards(data)] if isinstance(data, (str, Path)) else [str(p) for p in data or []]
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return ray.data.read_parquet(files, include_paths=True, columns=SHARD_COLUMNS), total


def predict_to_dir(data: str | list[str] | None, cfg: PredictConfig,
                   items: list[InputItem] | None = None) -> dict[str, Any]:
    """Predict every row of the shards in ``data`` (a directory or shard files), or every item of a
    plain-audio input (:func:`framecall.data.inputs.read_inputs`); -> the index written to
    ``output/_index.json``: id -> file or skip reason, counts, and failures counted by reason."""
    import os
    import sys

    if cfg.registry_uri is None:
        cfg.registry_uri = os.environ.get("MLFLOW_TRACKING_URI")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    ds, total = _dataset(data, items, cfg.batch_size)
    show = cfg.progress_bars == "on" or (cfg.progress_bars == "auto" and sys.stdout.isatty())
    ds.context.enable_progress_bars = show
    from framecall.runtime import actor_options

    results = ds.map_batches(PredictActor, fn_constructor_kwargs={"cfg": to_dict(cfg)}, batch_size=cfg.batch_size,
                             concurrency=cfg.actors, batch_format="numpy",
                             **actor_options("cpus_per_actor, gpus_per_actor", cfg.cpus_per_actor, cfg.gpus_per_actor))
    rows = _collect(results, total, show)
    failures = Counter(r["reason"] for r in rows if r["status"] != "ok")
    summary = {"rows": len(rows), "written": sum(r["status"] == "ok" for r in rows),
               "skipped": sum(r["status"] != "ok" for r in rows), "failures": dict(sorted(failures.items())),
               "format": cfg.format, "results": {r["id"]: (r["file"] or r["status"]) for r in rows}}
    (out / INDEX).write_text(json.dumps(summary, indent=2))
    return summary


def _collect(results, total: int, show: bool, every_s: float = 10.0) -> list[dict[str, Any]]:
    """Rows as they finish; with ``show``, a count line every ``every_s`` seconds and at the end."""
    rows: list[dict[str, Any]] = []
    last = time.monotonic()
    for row in results.iter_rows():
        rows.append(row)
        if show and (time.monotonic() - last >= every_s or len(rows) == total):
            failed = sum(r["status"] != "ok" for r in rows)
            print(f"[framecall] predicted {len(rows)}/{total} ({failed} failed)", flush=True)
            last = time.monotonic()
    return rows
