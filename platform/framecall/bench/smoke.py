"""GPU smoke check on a real checkpoint: one training step, one evaluation, one served request, each timed.

The same code runs on CPU with a tiny model (the test does); on a GPU node it shows the device, dtype and
peak memory the run actually got. Driven by ``jobs/gpu_smoke.py``.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

@dataclass
class SmokeReport:
    device: str
    dtype: str
    train_step_s: float
    eval_s: float
    eval_items: int
    serve_request_s: float
    served_times_s: list[float]
    peak_gpu_memory_gib: float | None
    """Peak CUDA memory of this process (evaluation and the in-process checks); None on CPU."""
    checkpoint: str

    def lines(self) -> list[str]:
        peak = "n/a (CPU)" if self.peak_gpu_memory_gib is None else f"{self.peak_gpu_memory_gib:.2f} GiB"
        return [f"device {self.device}, dtype {self.dtype}",
                f"training step (1 step through Ray Train, incl. start-up): {self.train_step_s:.1f} s",
                f"evaluation of {self.eval_items} items: {self.eval_s:.1f} s",
                f"served request (Ray Serve over HTTP, first request): {self.serve_request_s:.2f} s -> "
                f"{self.served_times_s}",
                f"peak GPU memory (this process): {peak}", f"checkpoint: {self.checkpoint}"]


def train_one_step(cfg) -> Any:
    """``cfg`` (a TrainJobConfig) with one step, one worker and one evaluation -> the FitResult."""
    from framecall.train.runner import fit

    cfg.train.max_steps, cfg.train.eval_every, cfg.train.warmup_steps = 1, 1, 1
    cfg.ray.num_workers = 1
    return fit(cfg, evaluate_test=False)


def serve_one_request(checkpoint: Path, audio: bytes, question: str, num_events: int, num_gpus: float,
                      url: str) -> tuple[float, Any]:
    """Deploy the checkpoint on the Ray Serve proxy at ``url``, send one /v1/localize request -> (seconds, answer)."""
    import requests
    from ray import serve

    from framecall.serve_app import build_app

    serve.run(build_app({"checkpoint": str(checkpoint), "allowed_roots": [str(checkpoint.parent)],
                         "model_num_gpus": num_gpus, "model_num_cpus": 0.5}), name="smoke", route_prefix="/")
    try:
        body = {"audio_b64": base64.b64encode(audio).decode(), "questions": [{"question": question, "num_events": num_events}]}
        t0 = time.perf_counter()
        r = requests.post(f"{url}/v1/localize", json=body, timeout=300)
        elapsed = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"served request failed: {r.status_code} {r.text[:300]}")
        return elapsed, r.json()
    finally:
        serve.delete("smoke")


def first_item(data_dir: str) -> tuple[bytes, str, int]:
    """The first row of the data: its audio bytes, its own question (the task the model was trained on) and
    its number of events."""
    import pyarrow.parquet as pq

    from framecall.data.shards import list_shards

    row = pq.read_table(list_shards(data_dir)[0], columns=["audio", "prompt", "num_events"]).slice(0, 1).to_pylist()[0]
    return row["audio"], row["prompt"], int(row["num_events"] or 1)


def run_smoke(cfg, serve_url: str | None = None, port: int = 8123) -> SmokeReport:
    """One training step of ``cfg`` (its model, data, dtype), then evaluation and one served request (on the
    Serve proxy at ``serve_url``, else one started on 127.0.0.1:``port``)."""
    import torch

    from framecall.serve_app import start_http_proxy

    from framecall.runtime import choose_device
    from framecall.train.evaluate import evaluate_checkpoint

    plan = choose_device("auto", cfg.model.dtype)
    t0 = time.perf_counter()
    result = train_one_step(cfg)
    train_s = time.perf_counter() - t0
    data = cfg.data.data_dir
    t0 = time.perf_counter()
    _, _, records = evaluate_checkpoint(result.best_checkpoint, data, split=cfg.data.test_split, max_items=4,
                                        dtype=cfg.model.dtype)
    eval_s = time.perf_counter() - t0
    audio, question, num_events = first_item(data)
    gpus = 1.0 if plan.device.type == "cuda" else 0.0
    url = serve_url or start_http_proxy("127.0.0.1", port)
    serve_s, answer = serve_one_request(Path(result.best_checkpoint), audio, question, num_events, gpus, url)
    peak = torch.cuda.max_memory_allocated() / 1024**3 if plan.device.type == "cuda" else None
    return SmokeReport(str(plan.device), str(plan.dtype).removeprefix("torch."), train_s, eval_s, len(records),
                       serve_s, answer["answers"][0]["times_s"], peak, str(result.best_checkpoint))
