"""Generation vs. frame-level inference speed (the seed's Figure 3), per word-count bucket.

Needs a checkpoint with both a token output and a frame head (jobs/train_interpolated.py)
and words_all shards with long enough clips for every bucket (1-5 ... 26+ words):

    python jobs/make_data.py --task words_all --num 400 --min-seconds 1 --max-seconds 14 --output runs/data/speed
    python jobs/bench_speed.py --checkpoint runs/reproduce/t5_interpolated/best --data runs/data/speed \
        --output-json runs/bench_speed.json --figure runs/bench_speed.png --target-formats compact,json_objects

``--target-formats``: the answer length generation is held to, per format: ``data`` (the rows'
target_text), ``compact`` ([0.21, ...]) or ``json_objects`` (the paper's [{"word": .., "start": ..}]).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.bench.speed import bench_speed, speed_figure, speed_table  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="all", help="split to draw items from ('all' for every row)")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target-formats", default="data", help="comma list of data, compact, json_objects")
    p.add_argument("--output-json")
    p.add_argument("--figure", default="bench_speed.png")
    p.add_argument("--mlflow-uri", help="log the table, JSON and figure to a new run here")
    args = p.parse_args()
    report = bench_speed(args.checkpoint, args.data, None if args.split == "all" else args.split,
                         [int(b) for b in args.batch_sizes.split(",")], repeats=args.repeats,
                         target_formats=args.target_formats.split(","))
    table = speed_table(report)
    print(table)
    fig = speed_figure(report)
    fig.savefig(args.figure, dpi=120)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2))
    if args.mlflow_uri:
        from framecall.tracking import RunLogger, start_run

        run = start_run(args.mlflow_uri, "bench_speed", Path(args.figure).resolve().parent / "mlartifacts",
                        "bench_speed", params={"checkpoint": args.checkpoint, "data": args.data,
                                             "target_formats": args.target_formats}, tags={})
        logger = RunLogger(args.mlflow_uri, run)
        logger.figure(fig, "speedup.png")
        logger.text(table, "speed_table.md")
        logger.text(json.dumps(report, indent=2), "speed.json")
        logger.finish()
