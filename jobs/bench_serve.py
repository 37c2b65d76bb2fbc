"""Load tests of the Serve app: batched vs. unbatched over HTTP, a batching sweep, the model alone.

``--mode http`` (default): deploys the app on loopback with --checkpoint, sends /v1/localize
requests built from held-out shard rows (audio + question + num_events) at each concurrency,
then switches max_batch_size to 1 through user_config (reconfigure, no restart) and repeats.
``--mode sweep``: over HTTP at the largest --concurrency, every --batch-sizes x --waits-ms cell.
``--mode handle``: the model deployment alone, called through a deployment handle (no HTTP, no
ingress) with decoded audio, for every --batch-sizes at each concurrency.
Reports throughput, p50/p99 latency, errors and lost requests per cell; writes JSON and a table.

    python jobs/bench_serve.py --checkpoint runs/train_poisson/best --data runs/data/words_all_8k \\
        --requests 2000 --concurrency 1,8,32 --output-json runs/bench_serve.json
    python jobs/bench_serve.py --mode sweep --requests 500 --concurrency 32 \\
        --batch-sizes 1,4,8,16,32 --waits-ms 0,5,10,20
    python jobs/bench_serve.py --mode handle --requests 1000 --concurrency 32 --batch-sizes 16,1
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.bench.serve import format_results, run_benchmark, run_handle_benchmark, run_sweep  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["http", "sweep", "handle"], default="http")
    p.add_argument("--checkpoint", default="runs/train_poisson/best")
    p.add_argument("--data", default="runs/data/words_all_8k", help="shards to draw request audio + questions from")
    p.add_argument("--split", default="test")
    p.add_argument("--requests", type=int, default=2000, help="requests per cell")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--max-batch-size", type=int, default=16, help="--mode http: the batched setting")
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.01, help="--mode http and handle")
    p.add_argument("--batch-sizes", default="1,4,8,16,32", help="--mode sweep and handle")
    p.add_argument("--waits-ms", default="0,5,10,20", help="--mode sweep: batch_wait_timeout_s values in ms")
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--output-json")
    args = p.parse_args()
    concurrency = _ints(args.concurrency)
    if args.mode == "sweep":
        results = run_sweep(args.checkpoint, args.data, args.split, args.requests, max(concurrency),
                            _ints(args.batch_sizes), [float(w) / 1000 for w in args.waits_ms.split(",")], args.port)
    elif args.mode == "handle":
        results = run_handle_benchmark(args.checkpoint, args.data, args.split, args.requests, concurrency,
                                       _ints(args.batch_sizes), args.batch_wait_timeout_s)
    else:
        results = run_benchmark(args.checkpoint, args.data, args.split, args.requests, concurrency,
                                args.max_batch_size, args.batch_wait_timeout_s, args.port)
    print(format_results(results))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(results, indent=2))
