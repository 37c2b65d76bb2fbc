"""Offline batch prediction through Ray Data with an actor pool (no server needed).

One result per input row under --output (<id>.json, .TextGrid or .ctm) and _index.json.

    python jobs/predict.py --checkpoint runs/train_poisson/best --data runs/data/words_all_8k --output runs/pred
    python jobs/predict.py --checkpoint models:/framecall-poisson/1 --data DIR --output runs/tg --format textgrid
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/predict.py --checkpoint $PWD/runs/... \
        --data $PWD/runs/data/words_all_8k --output $PWD/runs/pred --actors 4
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.batch_predict import PredictConfig, predict_to_dir  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or models:/name/version")
    p.add_argument("--data", required=True, help="shard directory, or shard files separated by commas")
    p.add_argument("--output", required=True)
    p.add_argument("--format", default="json", choices=["json", "textgrid", "ctm"])
    p.add_argument("--num-events", default="from-data", choices=["from-data", "estimate"])
    p.add_argument("--bad-rows", default="fail", choices=["fail", "skip"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--actors", type=int, default=1, help="model replicas in the actor pool")
    args = p.parse_args(argv)
    from framecall.runtime import init_ray

    init_ray()
    data = args.data.split(",") if "," in args.data else args.data
    cfg = PredictConfig(checkpoint=args.checkpoint, output=args.output, format=args.format,
                        num_events=args.num_events, bad_rows=args.bad_rows, batch_size=args.batch_size,
                        actors=args.actors)
    summary = predict_to_dir(data, cfg)
    print(f"{summary['written']} of {summary['rows']} rows written to {args.output} "
          f"({summary['skipped']} skipped; index: {Path(args.output) / '_index.json'})")
    return summary


if __name__ == "__main__":
    main()
