"""Command lines of the training and evaluation jobs (the jobs themselves stay thin)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from framecall.config import ConfigError, build_config, to_yaml

PRINT_CONFIG_HELP = "print the resolved config as YAML and exit (nothing starts)"


JOB_DEFAULTS = {
    "poisson": ["train.objective=frame", "train.loss=poisson"],
    "binary": ["train.objective=frame", "train.loss=binary"],
    "tokens": ["train.objective=tokens"],
    "interpolated": ["train.objective=interpolated", "train.loss=poisson"],
}


def train_main(job: str, argv: list[str] | None = None, doc: str = "") -> None:
    """``jobs/train_<job>.py``: --config, named flags, dotted overrides, then fit().

    ``job`` sets the objective (and the frame loss) unless the config or an override says
    otherwise; a loss that does not fit the job (a binary loss in train_poisson) is refused.
    """
    from framecall.config import load_yaml
    from framecall.train import pretrain  # noqa: F401 - registers the builder of a missing base preset
    from framecall.train.config import TrainJobConfig

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with TrainJobConfig sections")
    p.add_argument("--data", help="shard directory (made synthetically if missing and data.make_if_missing)")
    p.add_argument("--model", help="tiny-omni | tiny-qwen2-audio | tiny-omni-base | tiny-qwen2-audio-base | "
                   "checkpoint path | hub id")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--output", help="directory for checkpoints, MLflow store, tables")
    p.add_argument("--resume", action="store_true", default=None, help="continue from the latest checkpoint")
    p.add_argument("--print-config", action="store_true", help=PRINT_CONFIG_HELP)
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 ray.strategy=fsdp")
    args = p.parse_args(argv)
    flags = {"data.data_dir": args.data, "model.name": args.model, "train.max_steps": args.max_steps,
             "ray.num_workers": args.num_workers, "output": args.output, "resume": args.resume}
    from_file = load_yaml(args.config) if args.config else {}
    given = {o.split("=", 1)[0] for o in args.overrides} | {
        f"train.{k}" for k in (from_file.get("train") or {})}
    defaults = [d for d in JOB_DEFAULTS[job] if d.split("=", 1)[0] not in given]
    try:
        cfg = build_config(TrainJobConfig, args.config, flags, [*defaults, *args.overrides])
    except (ConfigError, ValueError) as e:
        p.error(str(e))
    wanted_objective = JOB_DEFAULTS[job][0].split("=", 1)[1]
    if cfg.train.objective != wanted_objective:
        p.error(f"train.objective={cfg.train.objective} does not fit this job ({job})")
    if job in ("poisson", "binary") and cfg.head != job:
        p.error(f"train.loss={cfg.train.loss} does not fit this job ({job})")
    if job == "interpolated" and cfg.head != "poisson":
        p.error(f"the interpolated loss is reported with a Poisson head; train.loss={cfg.train.loss} is not one")
    if args.output is None and "output" not in from_file and not any(o.startswith("output=") for o in args.overrides):
        cfg.output = f"runs/train_{job}"  # each job its own default directory
    if args.print_config:
        print(to_yaml(cfg), end="")
        return
    from framecall.tracking import redact
    from framecall.train.runner import fit

    result = fit(cfg)
    result.tracking_uri = redact(result.tracking_uri)  # printed below: never a URL's credentials
    print()
    print(result.table)
    print()
    print(f"best checkpoint: {result.best_checkpoint}")
    if result.registered_model:
        print(f"registered: {result.registered_model}  (MLFLOW_TRACKING_URI={result.tracking_uri})")
    print(f"MLflow run {result.run_id} in {result.tracking_uri}")
    print(f"  open it: mlflow ui --backend-store-uri {result.tracking_uri}")
    print(f"wall time: {result.wall_s:.1f} s")


def evaluate_main(argv: list[str] | None = None, doc: str = "") -> None:
    from framecall.train.evaluate import evaluate_checkpoint

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint directory (with manifest.json) or models:/name/version (MLFLOW_TRACKING_URI)")
    p.add_argument("--data", required=True, help="shard directory; several separated by commas")
    p.add_argument("--split", default="test", help="split to evaluate ('all' for every row)")
    p.add_argument("--decoders", default="all,tokens",
                   help="frame decoders, 'all' (every registered one the head reads) and/or 'tokens' (generated "
                        "answers); those the model lacks are skipped")
    p.add_argument("--pairings", default="positional,hungarian_acc",
                   help="metric pairings: positional, greedy, hungarian_l1, hungarian_acc (the first is the main one)")
    p.add_argument("--conventions", default="framecall", choices=["framecall", "paper"],
                   help="paper: errors rounded to 1 ms, extra predictions dropped, a miss charged half the audio in MAD")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--max-items", type=int)
    p.add_argument("--output-json", help="write the scores here as JSON")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU) | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16")
    args = p.parse_args(argv)
    split = None if args.split == "all" else args.split
    scores, table, _ = evaluate_checkpoint(args.checkpoint, args.data.split(","), split, args.decoders.split(","),
                                           max_items=args.max_items, max_new_tokens=args.max_new_tokens,
                                           pairings=args.pairings.split(","), convention=args.conventions,
                                           device=args.device, dtype=args.dtype)
    print(table)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(scores, indent=2))


def sweep_main(argv: list[str] | None = None, doc: str = "") -> None:
    """``jobs/tune_sweep.py``: a Ray Tune sweep of one loss's weight (plus lr) over the training job."""
    from framecall.train.config import TrainJobConfig
    from framecall.train.sweep import SWEEPS, SweepSection, run_sweep

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loss", required=True, choices=sorted(SWEEPS),
                   help="which sweep: interpolated (train.interp_lambda) or binary (pos_weight_scale)")
    p.add_argument("--config", help="training YAML (e.g. a train job's) used for every trial")
    p.add_argument("--sweep", help="YAML with SweepSection keys (space, baseline, num_samples, scheduler, ...)")
    p.add_argument("--data", help="shard directory")
    p.add_argument("--num-samples", type=int)
    p.add_argument("--max-concurrent-trials", type=int)
    p.add_argument("--output", default="runs/tune_sweep")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep (Tuner.restore)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved training config (train:) and sweep (sweep:) as YAML and exit")
    p.add_argument("overrides", nargs="*", help="train.max_steps=400 ... and sweep.grace_period=2 ...")
    args = p.parse_args(argv)
    from framecall.config import load_yaml

    preset = SWEEPS[args.loss]
    train_overrides = [o for o in args.overrides if not o.startswith("sweep.")]
    sweep_overrides = [o[len("sweep."):] for o in args.overrides if o.startswith("sweep.")]
    try:
        base = build_config(TrainJobConfig, args.config, {"data.data_dir": args.data},
                            [*preset["base"], *train_overrides])
        sweep_tree = {"space": preset["space"], "baseline": preset["baseline"], **(load_yaml(args.sweep)
                                                                                   if args.sweep else {})}
        sweep = build_config(SweepSection, flags={"num_samples": args.num_samples,
                                                  "max_concurrent_trials": args.max_concurrent_trials},
                             overrides=sweep_overrides, base=sweep_tree)
        if args.print_config:
            print(to_yaml({"train": base, "sweep": sweep}), end="")
            return
        result = run_sweep(base, sweep, args.output, resume=args.resume)
    except (ConfigError, ValueError) as e:
        p.error(str(e))
    print()
    print(result.table)
    print()
    print(f"best: {result.best_point}  ({sweep.metric} = {result.best_metric:.4f})")
    print(f"best config: {result.best_config_path}")
    print(f"  train it: python jobs/train_{'interpolated' if args.loss == 'interpolated' else 'binary'}.py "
          f"--config {result.best_config_path}")
    print(f"MLflow parent run {result.parent_run_id}; wall time {result.wall_s:.0f} s")
