"""Rows/s of the Ray Data decode+featurize pipeline vs a plain single-process loop.

    python benchmarks/bench_data_pipeline.py [--rows 480] [--rows-per-shard 16] [--num-cpus 2]

Both paths run the same per-row code (``featurize_batch``) over the same shards. Peak
memory is the largest sum of PSS (shared pages counted once) over the driver and all Ray worker processes, sampled
every 0.5 s; it is measured at 1x and 2x the number of shards (same shard size) to show
whether it grows with the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.data.pipeline import PipelineConfig, build_dataset, iterate_rows_locally  # noqa: E402
from framecall.data.shards import ShardWriter  # noqa: E402
from framecall.data.synthetic import SynthConfig, generate  # noqa: E402


class PeakRSS:
    """Samples the RSS of this process and its descendants (Ray workers, raylet, ...)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss  # PSS: shared pages (object store) counted once
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.5)  # reading smaps is not free on 2 cores: sample sparsely

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def make_corpus(root: Path, rows: int, rows_per_shard: int) -> Path:
    out = root / f"words_all_{rows}"
    if not out.exists():
        with ShardWriter(out, rows_per_shard=rows_per_shard) as w:
            w.write_all(generate(SynthConfig(task="words_all", num=rows, seed=11, splits={"train": 1.0})))
    return out


def plain_loop(data_dir: Path) -> tuple[int, float, int]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        n = sum(b.num_rows for b in iterate_rows_locally(data_dir, PipelineConfig()))
        dt = time.perf_counter() - t0
    return n, dt, mem.peak


def ray_pipeline(data_dir: Path) -> tuple[int, float, int]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        sd = build_dataset(data_dir, PipelineConfig())
        n = sum(b.num_rows for b in sd.dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
        dt = time.perf_counter() - t0
    return n, dt, mem.peak


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--rows-per-shard", type=int, default=100)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--output-json")
    args = p.parse_args()
    import ray

    root = Path(tempfile.mkdtemp(prefix="fc-bench-data-"))
    small = make_corpus(root, args.rows, args.rows_per_shard)
    big = make_corpus(root, 2 * args.rows, args.rows_per_shard)
    result: dict = {"rows": args.rows, "rows_per_shard": args.rows_per_shard, "cpu_count": os.cpu_count()}
    plain_loop(small)  # warm caches (feature extractor, page cache)
    n, dt, mem = plain_loop(small)
    result["plain"] = {"rows": n, "seconds": dt, "rows_per_s": n / dt, "peak_pss_mb": mem / 2**20}
    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    result["ray_start_s"] = time.perf_counter() - t0
    ray_pipeline(small)  # warm: worker processes, imports
    for name, d in (("ray", small), ("ray_2x_shards", big)):
        n, dt, mem = ray_pipeline(d)
        result[name] = {"rows": n, "shards": len(list(d.glob("shard-*.parquet"))), "seconds": dt,
                        "rows_per_s": n / dt, "peak_pss_mb": mem / 2**20}
    result["speedup"] = result["ray"]["rows_per_s"] / result["plain"]["rows_per_s"]
    ray.shutdown()
    print(json.dumps(result, indent=2))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
