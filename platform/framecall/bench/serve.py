"""The Serve load tests behind ``jobs/bench_serve.py``: over real HTTP (asyncio + httpx), a sweep of
``max_batch_size`` x ``batch_wait_timeout_s`` over HTTP, and the model deployment alone through a
deployment handle (no HTTP, no ingress)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def request_bodies(data_dir: str, split: str, limit: int = 64) -> list[dict[str, Any]]:
    """JSON bodies of /v1/localize from shard rows: the row's audio, question and event count."""
    import pyarrow.parquet as pq

    from framecall.data.shards import list_shards

    bodies = []
    for path in list_shards(data_dir):
        for row in pq.read_table(path, columns=["audio", "prompt", "num_events", "split"]).to_pylist():
            if split and row["split"] != split:
                continue
            bodies.append({"audio_b64": base64.b64encode(row["audio"]).decode(),
                           "questions": [{"question": row["prompt"], "num_events": int(row["num_events"])}]})
            if len(bodies) >= limit:
                return bodies
    if not bodies:
        raise ValueError(f"{data_dir}: no rows in split {split!r}")
    return bodies


async def _load(url: str, bodies: list[dict], total: int, concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_index = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < total:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/v1/localize", json=bodies[i % len(bodies)])
                if r.status_code == 200 and r.json()["answers"]:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=120.0, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
    return _summary(latencies, errors, total, time.perf_counter() - t0)


def _summary(latencies: list[float], errors: dict[str, int], total: int, wall: float) -> dict[str, Any]:
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"requests": total, "ok": len(latencies), "errors": errors,
            "lost": total - len(latencies) - sum(errors.values()), "wall_s": wall,
            "throughput_rps": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p99_ms": float(np.percentile(lat, 99) * 1000)}


def _deploy_http(checkpoint: Path, batch: int, wait_s: float, concurrency: int, total: int) -> None:
    """(Re)deploy the app; a changed user_config reconfigures the running replica (no restart)."""
    from ray import serve

    from framecall.serve_app import build_app

    serve.run(build_app({"checkpoint": str(checkpoint), "allowed_roots": [str(checkpoint.parent)],
                         "max_ongoing_requests": 4 * concurrency, "max_queued_requests": 4 * concurrency + total,
                         "max_batch_size": batch, "batch_wait_timeout_s": wait_s}), name="bench", route_prefix="/")


def run_benchmark(checkpoint: str, data_dir: str, split: str, total: int, concurrencies: list[int],
                  max_batch_size: int, batch_wait_timeout_s: float, port: int) -> dict[str, Any]:
    """Over HTTP: every concurrency with ``max_batch_size``, then again unbatched (1)."""
    cells = [(batch, batch_wait_timeout_s, c) for batch in (max_batch_size, 1) for c in concurrencies]
    return run_http_cells(checkpoint, data_dir, split, total, cells, port)


def run_sweep(checkpoint: str, data_dir: str, split: str, total: int, concurrency: int, batch_sizes: list[int],
              waits_s: list[float], port: int) -> dict[str, Any]:
    """Over HTTP at one concurrency: every ``max_batch_size`` x ``batch_wait_timeout_s``."""
    cells = [(batch, wait, concurrency) for batch in batch_sizes for wait in waits_s]
    return run_http_cells(checkpoint, data_dir, split, total, cells, port)


def run_http_cells(checkpoint: str, data_dir: str, split: str, total: int, cells: list[tuple[int, float, int]],
                   port: int) -> dict[str, Any]:
    """``total`` requests per (max_batch_size, batch_wait_timeout_s, concurrency) cell, 50 warm-up
    requests after each reconfiguration; one replica throughout."""
    from ray import serve

    from framecall.runtime import init_ray
    from framecall.serve_app import start_http_proxy

    ckpt = Path(checkpoint).resolve()
    bodies = request_bodies(data_dir, split)
    init_ray(log_to_driver=False)
    url = start_http_proxy("127.0.0.1", port)
    top = max(c for _, _, c in cells)
    results: dict[str, Any] = {"checkpoint": str(ckpt), "requests": total, "mode": "http", "runs": []}
    try:
        for batch, wait_s, c in cells:
            _deploy_http(ckpt, batch, wait_s, top, total)
            asyncio.run(_load(url, bodies, min(50, total), 4))  # warm-up
            run = asyncio.run(_load(url, bodies, total, c))
            run.update(max_batch_size=batch, batch_wait_timeout_s=wait_s, concurrency=c)
            print(json.dumps(run), flush=True)
            results["runs"].append(run)
    finally:
        serve.delete("bench")
    return results


def decoded_queries(data_dir: str, split: str, limit: int = 64) -> list[Any]:
    """The benchmark's request rows as the ingress hands them to the model: decoded 16 kHz queries."""
    from framecall.audio.io import decode_audio
    from framecall.inference import Query

    return [Query(decode_audio(base64.b64decode(b["audio_b64"]), source="bench")[0], b["questions"][0]["question"],
                  b["questions"][0]["num_events"]) for b in request_bodies(data_dir, split, limit)]


async def _handle_load(handle: Any, queries: list[Any], total: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_index = 0

    async def caller() -> None:
        nonlocal next_index
        while next_index < total:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                result = await handle.localize.remote(queries[i % len(queries)])
                if "error" in result:
                    errors["model"] = errors.get("model", 0) + 1
                else:
                    latencies.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted by type, the run goes on
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*[caller() for _ in range(concurrency)])
    return _summary(latencies, errors, total, time.perf_counter() - t0)


def run_handle_benchmark(checkpoint: str, data_dir: str, split: str, total: int, concurrencies: list[int],
                         batch_sizes: list[int], batch_wait_timeout_s: float) -> dict[str, Any]:
    """The model deployment alone (``FrameModelServer``, one replica) called through a deployment
    handle by ``concurrency`` asyncio callers in this process: no HTTP proxy, no ingress."""
    from ray import serve

    from framecall.runtime import actor_options, init_ray
    from framecall.serve_app import FrameModelServer
    from framecall.serving import ServeSettings
    from framecall.config import to_dict

    ckpt = Path(checkpoint).resolve()
    queries = decoded_queries(data_dir, split)
    init_ray(log_to_driver=False)
    settings = ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(ckpt.parent)])
    results: dict[str, Any] = {"checkpoint": str(ckpt), "requests": total, "mode": "handle", "runs": []}
    try:
        for batch in batch_sizes:
            app = FrameModelServer.options(  # type: ignore[attr-defined]
                ray_actor_options=actor_options("model_num_cpus", settings.model_num_cpus, 0),
                max_ongoing_requests=4 * max(concurrencies), max_queued_requests=-1,
                user_config={"max_batch_size": batch, "batch_wait_timeout_s": batch_wait_timeout_s},
            ).bind(to_dict(settings))
            handle = serve.run(app, name="bench_model", route_prefix=None)
            for c in concurrencies:
                asyncio.run(_handle_load(handle, queries, min(50, total), 4))  # warm-up
                run = asyncio.run(_handle_load(handle, queries, total, c))
                run.update(max_batch_size=batch, batch_wait_timeout_s=batch_wait_timeout_s, concurrency=c)
                print(json.dumps(run), flush=True)
                results["runs"].append(run)
    finally:
        serve.delete("bench_model")
    return results


def format_results(results: dict[str, Any]) -> str:
    lines = ["| max_batch_size | batch_wait_timeout_s | concurrency | requests | ok | errors | lost | "
             "throughput (req/s) | p50 (ms) | p99 (ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(f"| {r['max_batch_size']} | {r['batch_wait_timeout_s']:g} | {r['concurrency']} | {r['requests']} | {r['ok']} | "
                     f"{sum(r['errors'].values())} | {r['lost']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} |")
    return "\n".join(lines)
