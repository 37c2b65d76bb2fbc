"""Write shards atomically with a manifest of counts and checksums; list and verify them.

Layout of a shard directory::

    DIR/shard-00000.parquet ...   rows in SHARD_SCHEMA
    DIR/_manifest.json             schema version, per-shard rows/bytes/sha256, counts, params

Each shard is written to a temporary name in DIR and renamed into place, so a crashed
writer never leaves a half-written ``shard-*.parquet`` for a reader to pick up.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from framecall.data.schema import SCHEMA_VERSION, SHARD_SCHEMA, ShardSchemaError, check_row, check_schema
from framecall.models.checkpoint import file_sha256

MANIFEST_NAME = "_manifest.json"
SHARD_GLOB = "shard-*.parquet"


class ShardDirectoryError(FileNotFoundError):
    """A shard directory is missing, empty, or disagrees with its manifest."""


_sha256 = file_sha256


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; shards are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ShardWriter:
    """Buffers rows, writes ``rows_per_shard`` at a time, then the manifest on ``close``.

    Every row is checked (types by pyarrow, semantics by :func:`check_row`) before it is
    buffered, so a bad generator fails at the row that is wrong.
    """

    def __init__(self, output_dir: str | Path, rows_per_shard: int = 256, params: Mapping[str, Any] | None = None):
        if rows_per_shard < 1:
            raise ValueError("rows_per_shard must be >= 1")
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.output_dir.glob(SHARD_GLOB))
        if existing:
            raise ShardDirectoryError(
                f"{self.output_dir} already holds {len(existing)} shard(s); write to an empty directory"
            )
        self.rows_per_shard = rows_per_shard
        self.params = dict(params or {})
        self._buffer: list[dict[str, Any]] = []
        self._shards: list[dict[str, Any]] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._seconds = 0.0
        self._ids: set[str] = set()
        self._closed = False

    def write(self, row: Mapping[str, Any]) -> None:
        source = f"row {len(self._ids)} (id={row.get('id')!r})"
        check_row(row, source)
        if row["id"] in self._ids:
            raise ShardSchemaError(f"{source}: duplicate id")
        self._ids.add(row["id"])
        self._buffer.append(dict(row))
        self._counts[(row["task"], row["split"])] += 1
        self._seconds += float(row["duration_s"])
        if len(self._buffer) >= self.rows_per_shard:
            self._flush()

    def write_all(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.write(row)

    def _flush(self) -> None:
        if not self._buffer:
            return
        name = f"shard-{len(self._shards):05d}.parquet"
        table = pa.Table.from_pylist(self._buffer, schema=SHARD_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        path = self.output_dir / name
        _atomic_write_bytes(path, sink.getvalue().to_pybytes())
        self._shards.append(
            {"name": name, "rows": table.num_rows, "bytes": path.stat().st_size, "sha256": _sha256(path)}
        )
        self._buffer = []

    def close(self) -> dict[str, Any]:
        """Flush the last shard and write ``_manifest.json``; returns the manifest."""
        if self._closed:
            raise RuntimeError("ShardWriter is already closed")
        self._flush()
        self._closed = True
        counts: dict[str, dict[str, int]] = {}
        for (task, split), n in sorted(self._counts.items()):
            counts.setdefault(task, {})[split] = n
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "num_rows": sum(s["rows"] for s in self._shards),
            "total_hours": self._seconds / 3600.0,
            "counts": counts,
            "shards": self._shards,
            "params": self.params,
        }
        _atomic_write_bytes(self.output_dir / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
        return manifest

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._closed:
            self.close()


def read_manifest(data_dir: str | Path) -> dict[str, Any]:
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ShardDirectoryError(f"{data_dir}: no {MANIFEST_NAME} (not a framecall shard directory?)")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ShardDirectoryError(f"{path}: not valid JSON ({e})") from e


def manifest_checksum(data_dir: str | Path) -> str:
    """sha256 of the manifest file: names the exact data a run trained on."""
    return _sha256(Path(data_dir) / MANIFEST_NAME)


def list_shards(data_dir: str | Path, verify: bool = False) -> list[Path]:
    """The shard files of ``data_dir`` in manifest order; with ``verify``, checksums and schemas.

    A directory without shards, a shard named in the manifest but absent, or (with
    ``verify``) a checksum or schema mismatch raises with the shard's path.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ShardDirectoryError(f"data directory {data_dir} does not exist")
    found = sorted(data_dir.glob(SHARD_GLOB))
    if not found:
        raise ShardDirectoryError(f"{data_dir}: no {SHARD_GLOB} files")
    manifest_path = data_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        if verify:
            for path in found:
                check_schema(pq.read_schema(path), str(path))
        return found
    manifest = read_manifest(data_dir)
    paths = []
    for entry in manifest["shards"]:
        path = data_dir / entry["name"]
        if not path.is_file():
            raise ShardDirectoryError(f"{path}: listed in the manifest but missing")
        if verify:
            if _sha256(path) != entry["sha256"]:
                raise ShardDirectoryError(f"{path}: sha256 differs from the manifest (modified or truncated)")
            check_schema(pq.read_schema(path), str(path))
        paths.append(path)
    return paths


def read_shard(path: str | Path) -> pa.Table:
    """Read one shard with a schema check that names the file."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ShardSchemaError(f"{path}: not a readable parquet file ({e})") from e
    check_schema(table.schema, str(path))
    return table
