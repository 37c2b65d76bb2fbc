"""The Serve load test behind ``jobs/bench_serve.py`` (asyncio + httpx against real HTTP)."""

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
    wall = time.perf_counter() - t0
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"requests": total, "ok": len(latencies), "errors": errors,
            "lost": total - len(latencies) - sum(errors.values()), "wall_s": wall,
            "throughput_rps": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50) * 1000),
            "p99_ms": float(np.percentile(lat, 99) * 1000)}


def run_benchmark(checkpoint: str, data_dir: str, split: str, total: int, concurrencies: list[int],
                  max_batch_size: int, batch_wait_timeout_s: float, port: int) -> dict[str, Any]:
    from ray import serve

    from framecall.runtime import init_ray
    from framecall.serve_app import build_app, start_http_proxy

    ckpt = Path(checkpoint).resolve()
    bodies = request_bodies(data_dir, split)
    init_ray(log_to_driver=False)
    url = start_http_proxy("127.0.0.1", port)
    args = {"checkpoint": str(ckpt), "allowed_roots": [str(ckpt.parent)], "max_ongoing_requests": 4 * max(
        concurrencies), "max_queued_requests": 4 * max(concurrencies) + total}
    results: dict[str, Any] = {"checkpoint": str(ckpt), "requests": total, "runs": []}
    try:
        for batch in (max_batch_size, 1):
            # same replica, new user_config: reconfigure() changes the batch size live
            serve.run(build_app({**args, "max_batch_size": batch, "batch_wait_timeout_s": batch_wait_timeout_s}),
                      name="bench", route_prefix="/")
            asyncio.run(_load(url, bodies, min(50, total), 4))  # warm-up
            for c in concurrencies:
                run = asyncio.run(_load(url, bodies, total, c))
                run.update(max_batch_size=batch, concurrency=c)
                print(json.dumps(run), flush=True)
                results["runs"].append(run)
    finally:
        serve.delete("bench")
    return results


def format_results(results: dict[str, Any]) -> str:
    lines = ["| max_batch_size | concurrency | requests | ok | errors | lost | throughput (req/s) | p50 (ms) | p99 (ms) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(f"| {r['max_batch_size']} | {r['concurrency']} | {r['requests']} | {r['ok']} | "
                     f"{sum(r['errors'].values())} | {r['lost']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} |")
    return "\n".join(lines)
