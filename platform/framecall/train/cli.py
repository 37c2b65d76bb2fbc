"""Command lines of the training and evaluation jobs (the jobs themselves stay thin)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from framecall.config import ConfigError, build_config


def train_main(loss: str, argv: list[str] | None = None, doc: str = "") -> None:
    """``jobs/train_<loss>.py``: --config, named flags, dotted overrides, then fit()."""
    from framecall.train.config import TrainJobConfig

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with TrainJobConfig sections")
    p.add_argument("--data", help="shard directory (made synthetically if missing and data.make_if_missing)")
    p.add_argument("--model", help="tiny-omni | tiny-qwen2-audio | checkpoint path | hub id")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--output", help="directory for checkpoints, MLflow store, tables")
    p.add_argument("--resume", action="store_true", default=None, help="continue from the latest checkpoint")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 ray.strategy=fsdp")
    args = p.parse_args(argv)
    flags = {"data.data_dir": args.data, "model.name": args.model, "train.max_steps": args.max_steps,
             "ray.num_workers": args.num_workers, "output": args.output, "resume": args.resume}
    try:
        cfg = build_config(TrainJobConfig, args.config, flags, [f"train.loss={loss}", *args.overrides]
                           if not any(o.startswith("train.loss=") for o in args.overrides) else args.overrides)
    except (ConfigError, ValueError) as e:
        p.error(str(e))
    if cfg.head != {"poisson": "poisson", "poisson_conditional": "poisson", "binary": "binary"}[loss]:
        p.error(f"train.loss={cfg.train.loss} does not fit this job ({loss})")
    from framecall.config import load_yaml

    if args.output is None and "output" not in (load_yaml(args.config) if args.config else {}) \
            and not any(o.startswith("output=") for o in args.overrides):
        cfg.output = f"runs/train_{loss}"  # each job its own default directory
    from framecall.train.runner import fit

    result = fit(cfg)
    print()
    print(result.table)
    print()
    print(f"best checkpoint: {result.best_checkpoint}")
    print(f"MLflow run {result.run_id} in {result.tracking_uri}")
    print(f"  open it: mlflow ui --backend-store-uri {result.tracking_uri}")
    print(f"wall time: {result.wall_s:.1f} s")


def evaluate_main(argv: list[str] | None = None, doc: str = "") -> None:
    from framecall.train.evaluate import evaluate_checkpoint

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (with manifest.json)")
    p.add_argument("--data", required=True, help="shard directory")
    p.add_argument("--split", default="test", help="split to evaluate ('all' for every row)")
    p.add_argument("--decoders", default="topn_nms,posterior_mode,posterior_median,topk")
    p.add_argument("--max-items", type=int)
    p.add_argument("--output-json", help="write the scores here as JSON")
    args = p.parse_args(argv)
    split = None if args.split == "all" else args.split
    scores, table, _ = evaluate_checkpoint(args.checkpoint, args.data, split, args.decoders.split(","),
                                           max_items=args.max_items)
    print(table)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(scores, indent=2))
