"""Offline batch prediction without a server: Ray Data reads shards, an actor pool of
frame engines (the Serve engine, same batching and long-audio stitching) predicts, and each
input row gets one result file: ``<id>.json`` (times), ``.TextGrid`` or ``.ctm`` (alignments
of rows whose metadata holds a transcript, i.e. words_all).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framecall.audio.io import AudioError, decode_audio
from framecall.config import to_dict
from framecall.inference import FrameLocalizer, Query, align_words
from framecall.serving import OUTPUT_FORMATS, format_alignment

SUFFIX = {"json": ".json", "textgrid": ".TextGrid", "ctm": ".ctm"}
INDEX = "_index.json"
"""The results index beside the result files (a row id may not overwrite it)."""


class PredictError(RuntimeError):
    """A row that could not be predicted, with the bad_rows=fail policy."""


@dataclass
class PredictConfig:
    checkpoint: str
    output: str
    format: str = "json"
    """json | textgrid | ctm (the last two need a transcript: words_all rows)."""
    num_events: str = "from-data"
    """from-data: the row's num_events (the question states it) | estimate: Lam(T) of a Poisson head."""
    bad_rows: str = "fail"
    """fail: stop at the first bad row, naming it | skip: record it in the results index and go on."""
    registry_uri: str | None = None
    """MLflow server of a models:/ checkpoint (default: MLFLOW_TRACKING_URI of the driver)."""
    batch_size: int = 8
    actors: int = 1
    cpus_per_actor: float = 1.0

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"format must be one of {list(OUTPUT_FORMATS)}, got {self.format!r}")
        if self.num_events not in ("from-data", "estimate"):
            raise ValueError(f"num_events must be from-data or estimate, got {self.num_events!r}")
        if self.bad_rows not in ("fail", "skip"):
            raise ValueError(f"bad_rows must be fail or skip, got {self.bad_rows!r}")


def output_name(row_id: str, suffix: str) -> str:
    """The result file name of a row: its id, which must be one plain file name (no directory part,
    no ``.``/``..``, no NUL, at most 200 characters), so no id writes outside the output directory."""
    bad = (row_id in ("", ".", "..") or any(c in row_id for c in "/\\\x00") or len(row_id) > 200
           or row_id != row_id.strip() or row_id + suffix == INDEX)
    if bad:
        raise PredictError(f"id={row_id[:200]!r}: not usable as a result file name (a row id must be one "
                           "plain file name: no '/', '\\', '..', NUL, edge spaces, over 200 characters)")
    return row_id + suffix


class PredictActor:
    """One replica of the model in the Ray Data actor pool."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = PredictConfig(**cfg)
        if self.cfg.registry_uri:  # a models:/ checkpoint is read from this server
            import os

            os.environ["MLFLOW_TRACKING_URI"] = self.cfg.registry_uri
        self.engine = FrameLocalizer.from_pretrained(self.cfg.checkpoint)
        self.out = Path(self.cfg.output)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        ids = [str(x) for x in batch["id"]]
        queries, keep, status = [], [], ["ok"] * len(ids)
        for i, rid in enumerate(ids):
            source = f"{batch['path'][i]} (id={rid})" if "path" in batch else f"id={rid}"
            try:
                output_name(rid, SUFFIX[self.cfg.format])
                samples, _ = decode_audio(bytes(batch["audio"][i]), source=source)
            except (AudioError, PredictError) as e:
                if self.cfg.bad_rows == "fail":
                    raise PredictError(str(e)) from None
                status[i] = f"skipped: {e}"
                continue
            n = int(batch["num_events"][i]) if self.cfg.num_events == "from-data" else None
            queries.append(Query(samples, str(batch["prompt"][i]), n))
            keep.append(i)
        results = self.engine.predict(queries) if queries else []
        files = [""] * len(ids)
        for i, result in zip(keep, results):
            rid, meta = ids[i], json.loads(batch["meta"][i] or "{}")
            transcript = meta.get("transcript")
            if self.cfg.format == "json":
                body = json.dumps({"id": rid, "prompt": str(batch["prompt"][i]), **result,
                                   "model": self.engine.info["name"]})
            elif transcript is None:
                status[i] = f"skipped: format {self.cfg.format} needs a transcript (words_all rows)"
                if self.cfg.bad_rows == "fail":
                    raise PredictError(f"id={rid}: {status[i][9:]}")
                continue
            else:
                samples = queries[keep.index(i)].samples
                words = align_words(transcript.split(), result["times_s"], samples)
                body = format_alignment(words, self.cfg.format, samples.size / 16000, utterance=rid)
            path = self.out / output_name(rid, SUFFIX[self.cfg.format])
            path.write_text(body)
            files[i] = str(path)
        return {"id": ids, "status": status, "file": files}


def predict_to_dir(data: str | list[str], cfg: PredictConfig) -> dict[str, Any]:
    """Predict every row of the shards in ``data`` (a directory or shard files); -> the index
    written to ``output/_index.json`` (id -> file or skip reason, and counts)."""
    import os

    import ray.data

    from framecall.data.shards import list_shards

    if cfg.registry_uri is None:
        cfg.registry_uri = os.environ.get("MLFLOW_TRACKING_URI")

    files = [str(p) for p in list_shards(data)] if isinstance(data, (str, Path)) else [str(p) for p in data]
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    ds = ray.data.read_parquet(files, include_paths=True,
                               columns=["id", "prompt", "audio", "num_events", "meta", "task"])
    ds.context.enable_progress_bars = False
    results = ds.map_batches(PredictActor, fn_constructor_kwargs={"cfg": to_dict(cfg)}, batch_size=cfg.batch_size,
                             concurrency=cfg.actors, num_cpus=cfg.cpus_per_actor, batch_format="numpy")
    rows = results.take_all()
    index = {r["id"]: (r["file"] or r["status"]) for r in rows}
    summary = {"rows": len(rows), "written": sum(r["status"] == "ok" for r in rows),
               "skipped": sum(r["status"] != "ok" for r in rows), "format": cfg.format, "results": index}
    (out / INDEX).write_text(json.dumps(summary, indent=2))
    return summary
