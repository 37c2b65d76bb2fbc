"""Rows/s of the Ray Data decode+featurize pipeline vs a plain single-process loop.

    python benchmarks/bench_data_pipeline.py [--rows 480] [--rows-per-shard 16] [--num-cpus 2] [--collate]

All paths run the same per-row code (``featurize_batch``) over the same shards: the plain loop and
``ray`` with ``featurize="pipeline"`` (log-mel per row), ``ray_worker`` with ``featurize="worker"``
(waveforms; the consumer's FrameCollator pads and featurizes each batch of ``--batch-size`` with
``log_mel_batch``, as a training worker does). Without ``--collate`` the plain loop and ``ray`` stop
at featurized Arrow batches (issue #2's table); with it every path ends in collated training batches
(``iter_torch_batches(collate_fn=FrameCollator())``). Peak
memory is the largest sum of PSS (shared pages counted once) over the driver and all Ray worker processes, sampled
every 0.5 s; it is measured at 1x and 2x the number of shards (same shard size) to show
whether it grows with the corpus.

Step time of the main job in one featurize mode (``time/*`` phase means from its MLflow run)::

    python benchmarks/bench_data_pipeline.py --train-featurize worker -- --data runs/data/words_all_8k \
        --max-steps 60 --output /tmp/step_worker train.eval_every=60
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

from framecall.data.collate import FrameCollator  # noqa: E402
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
    out = root / f"words_all_{rows}_{rows_per_shard}"
    if not out.exists():
        with ShardWriter(out, rows_per_shard=rows_per_shard) as w:
            w.write_all(generate(SynthConfig(task="words_all", num=rows, seed=11, splits={"train": 1.0})))
    return out


def plain_loop(data_dir: Path, collate: bool, batch_size: int) -> tuple[int, float, int]:
    collator = FrameCollator()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        n = 0
        for table in iterate_rows_locally(data_dir, PipelineConfig(batch_size=batch_size)):
            n += len(collator(table.to_pydict())["ids"]) if collate else table.num_rows
        dt = time.perf_counter() - t0
    return n, dt, mem.peak


def ray_pipeline(data_dir: Path, featurize: str, collate: bool, batch_size: int) -> tuple[int, float, int]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        ds = build_dataset(data_dir, PipelineConfig(featurize=featurize)).dataset  # type: ignore[arg-type]
        if collate or featurize == "worker":  # waveforms are featurized by the consumer's collator
            batches = ds.iter_torch_batches(batch_size=batch_size, collate_fn=FrameCollator())
            n = sum(len(b["ids"]) for b in batches)
        else:
            n = sum(b.num_rows for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"))
        dt = time.perf_counter() - t0
    return n, dt, mem.peak


def train_step_time(featurize: str, job_args: list[str]) -> dict:
    """The main job (``jobs/train_poisson.py``'s config with ``job_args``) with ``data.featurize`` = ``featurize``,
    no test evaluation -> phase means over its logged steps and the training wall time."""
    import mlflow

    from framecall.config import build_config
    from framecall.train.cli import JOB_DEFAULTS
    from framecall.train.config import TrainJobConfig
    from framecall.train.runner import fit

    flags = argparse.ArgumentParser()
    for name in ("--data", "--max-steps", "--output"):
        flags.add_argument(name)
    known, overrides = flags.parse_known_args(job_args)
    cfg = build_config(TrainJobConfig, None, {"data.data_dir": known.data, "output": known.output,
                                               "train.max_steps": int(known.max_steps)},
                       [*JOB_DEFAULTS["poisson"], *overrides, f"data.featurize={featurize}"])
    result = fit(cfg, evaluate_test=False)
    client = mlflow.tracking.MlflowClient(result.tracking_uri)
    out: dict = {"featurize": featurize, "wall_s": result.wall_s, "load_average": os.getloadavg(), "args": job_args}
    for key in ("time/data", "time/forward_backward", "time/optimizer", "time/data_fraction", "train/seconds"):
        hist = sorted(client.get_metric_history(result.run_id, key), key=lambda m: m.step)
        out[key] = {m.step: m.value for m in hist}
    seconds = out["train/seconds"]
    steps = sorted(seconds)
    if len(steps) >= 2:  # from the first logged step (model built, first batch in) to the last
        out["s_per_step_after_first"] = (seconds[steps[-1]] - seconds[steps[0]]) / (steps[-1] - steps[0])
    return out


def main() -> None:
    if "--train-featurize" in sys.argv:
        i = sys.argv.index("--train-featurize")
        rest = sys.argv[i + 2:]
        result = train_step_time(sys.argv[i + 1], rest[1:] if rest[:1] == ["--"] else rest)
        print(json.dumps(result, indent=2))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--rows-per-shard", type=int, default=100)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32, help="rows per consumer batch (a train worker's batch)")
    p.add_argument("--collate", action="store_true", help="every path ends in collated training batches")
    p.add_argument("--repeats", type=int, default=1, help="runs per path, interleaved; the median is reported")
    p.add_argument("--corpus-dir", help="keep the generated shards here and reuse them (default: a new temp dir)")
    p.add_argument("--output-json")
    args = p.parse_args()
    import ray

    root = Path(args.corpus_dir) if args.corpus_dir else Path(tempfile.mkdtemp(prefix="fc-bench-data-"))
    small = make_corpus(root, args.rows, args.rows_per_shard)
    big = make_corpus(root, 2 * args.rows, args.rows_per_shard)
    result: dict = {"rows": args.rows, "rows_per_shard": args.rows_per_shard, "cpu_count": os.cpu_count(),
                    "batch_size": args.batch_size, "collate": args.collate, "load_average": os.getloadavg()}
    plain_loop(small, args.collate, args.batch_size)  # warm caches (feature extractor, page cache)
    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    result["ray_start_s"] = time.perf_counter() - t0
    for mode in ("pipeline", "worker"):  # warm: worker processes, imports
        ray_pipeline(small, mode, args.collate, args.batch_size)
    runs: dict[str, list] = {}
    for _ in range(args.repeats):  # interleaved: a shared machine's load drifts
        runs.setdefault("plain", []).append((small, plain_loop(small, args.collate, args.batch_size)))
        for name, mode, d in (("ray", "pipeline", small), ("ray_worker", "worker", small),
                              ("ray_2x_shards", "pipeline", big), ("ray_worker_2x_shards", "worker", big)):
            runs.setdefault(name, []).append((d, ray_pipeline(d, mode, args.collate, args.batch_size)))
    for name, rs in runs.items():
        d, (n, dt, mem) = sorted(rs, key=lambda r: r[1][1])[len(rs) // 2]
        result[name] = {"rows": n, "shards": len(list(d.glob("shard-*.parquet"))), "seconds": dt,
                        "rows_per_s": n / dt, "peak_pss_mb": mem / 2**20,
                        "all_seconds": [r[1][1] for r in rs], "all_peak_pss_mb": [r[1][2] / 2**20 for r in rs]}
    for name in ("ray", "ray_worker"):
        result[f"speedup_{name}"] = result[name]["rows_per_s"] / result["plain"]["rows_per_s"]
    ray.shutdown()
    print(json.dumps(result, indent=2))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
