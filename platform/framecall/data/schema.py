"""The versioned pyarrow schema of an audio shard (see shared DESIGN.md, "Shard schema").

All times are seconds. ``event_times_s`` holds the times the answer consists of (what a
frame head is trained to fire on); ``query_index`` is the k of a "k-th occurrence"
question, null otherwise. ``clips`` is empty for single-clip items. ``meta`` is a JSON
string (word lists, voices, labels, ...). Add a column only by bumping the version.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import pyarrow as pa

SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = b"framecall.schema_version"

CLIP_TYPE = pa.struct(
    [
        ("audio", pa.binary()),
        ("sample_rate", pa.int32()),
        ("duration_s", pa.float64()),
        ("event_times_s", pa.list_(pa.float64())),
        ("labels", pa.list_(pa.string())),
        ("speaker", pa.string()),
    ]
)

SHARD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("target_text", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("audio", pa.binary(), nullable=False),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("event_times_s", pa.list_(pa.float64()), nullable=False),
        pa.field("num_events", pa.int32(), nullable=False),
        pa.field("query_index", pa.int32(), nullable=True),
        pa.field("clips", pa.list_(CLIP_TYPE), nullable=False),
        pa.field("meta", pa.string(), nullable=False),
    ],
    metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()},
)

COLUMNS = tuple(SHARD_SCHEMA.names)
TASKS = ("words", "words_all", "speakers", "events")


class ShardSchemaError(ValueError):
    """A shard (or row) does not match the shard schema. The message names the shard."""


def check_schema(schema: pa.Schema, source: str) -> None:
    """Raise ShardSchemaError naming ``source`` if ``schema`` is not the shard schema."""
    missing = [n for n in COLUMNS if n not in schema.names]
    if missing:
        raise ShardSchemaError(f"{source}: missing column(s) {missing} (shard schema v{SCHEMA_VERSION})")
    extra = [n for n in schema.names if n not in COLUMNS]
    if extra:
        raise ShardSchemaError(f"{source}: unexpected column(s) {extra} (shard schema v{SCHEMA_VERSION})")
    for field in SHARD_SCHEMA:
        got = schema.field(field.name).type
        if not got.equals(field.type):
            raise ShardSchemaError(f"{source}: column {field.name!r} has type {got}, expected {field.type}")
    version = (schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if version is not None and int(version) != SCHEMA_VERSION:
        raise ShardSchemaError(f"{source}: schema version {int(version)}, this framecall reads v{SCHEMA_VERSION}")


def check_row(row: Mapping[str, Any], source: str) -> None:
    """Semantic checks of one row beyond its types (times, counts, JSON meta)."""
    missing = [n for n in COLUMNS if n not in row]
    if missing:
        raise ShardSchemaError(f"{source}: row is missing field(s) {missing}")
    for name in ("id", "task", "split", "prompt"):
        if not row[name]:
            raise ShardSchemaError(f"{source}: field {name!r} is empty")
    duration = row["duration_s"]
    if duration is None or not math.isfinite(duration) or duration <= 0:  # NaN passes a plain "<= 0"
        raise ShardSchemaError(f"{source}: field 'duration_s' must be finite and > 0, got {duration!r}")
    times = list(row["event_times_s"] or [])
    if row["num_events"] != len(times):
        raise ShardSchemaError(
            f"{source}: field 'num_events' is {row['num_events']} but 'event_times_s' has {len(times)} times"
        )
    for t in times:
        if t is None or not (0.0 <= t <= duration):
            raise ShardSchemaError(f"{source}: field 'event_times_s' has {t!r}, outside [0, {duration}] s")
    if any(b < a for a, b in zip(times, times[1:])):
        raise ShardSchemaError(f"{source}: field 'event_times_s' is not sorted")
    q = row["query_index"]
    if q is not None and q < 1:
        raise ShardSchemaError(f"{source}: field 'query_index' must be >= 1, got {q}")
    try:
        json.loads(row["meta"])
    except (TypeError, ValueError) as e:
        raise ShardSchemaError(f"{source}: field 'meta' is not JSON ({e})") from e
