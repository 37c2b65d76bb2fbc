"""Load test of the Serve endpoint: N requests at several concurrencies, batched vs. unbatched.

Deploys the app on loopback with --checkpoint, sends /v1/localize requests built from
held-out shard rows (audio + question + num_events), then switches max_batch_size to 1
through user_config (reconfigure, no restart) and repeats. Reports throughput, p50/p99
latency, errors and lost requests per (batching, concurrency); writes JSON and a table.

    python jobs/bench_serve.py --checkpoint runs/train_poisson/best --data runs/data/words_all_8k \
        --requests 2000 --concurrency 1,8,32 --output-json runs/bench_serve.json
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.bench.serve import format_results, run_benchmark  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/train_poisson/best")
    p.add_argument("--data", default="runs/data/words_all_8k", help="shards to draw request audio + questions from")
    p.add_argument("--split", default="test")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.01)
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--output-json")
    args = p.parse_args()
    results = run_benchmark(args.checkpoint, args.data, args.split, args.requests,
                            [int(c) for c in args.concurrency.split(",")], args.max_batch_size,
                            args.batch_wait_timeout_s, args.port)
    print(format_results(results))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(results, indent=2))
