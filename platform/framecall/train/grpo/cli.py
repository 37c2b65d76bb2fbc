"""Command lines of ``jobs/train_sft.py`` and ``jobs/train_grpo.py``: --config, named flags, dotted overrides."""

from __future__ import annotations

import argparse

from framecall.config import config_from_args


def _parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with the job's config sections")
    p.add_argument("--data", help="PolyAudio shard directory (made synthetically if missing and data.make_if_missing)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--num-workers", type=int, help="Ray Train learner workers")
    p.add_argument("--output", help="directory for checkpoints, the MLflow store, the merged base")
    p.add_argument("--resume", action="store_true", default=None, help="continue from the latest checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. lora.r=16 grpo.kl_coef=0.01")
    return p


def _run(p: argparse.ArgumentParser, args: argparse.Namespace, cls: type, flags: dict, fit, stage: str) -> None:
    """Shared flags, then ``fit`` of the built config; a config error exits with argparse's 2."""
    flags = {"data.data_dir": args.data, "ray.num_workers": args.num_workers, "output": args.output,
             "resume": args.resume, **flags}
    cfg = config_from_args(p, args, cls, flags)
    if cfg is None:
        return
    result = fit(cfg)
    from framecall.tracking import redact

    print(f"{stage} adapter: {result.best_checkpoint}  MLflow run {result.run_id} ({redact(result.tracking_uri)})"
          f"  registered {result.registered_model}  {result.wall_s:.0f} s")


def sft_main(argv: list[str] | None = None, doc: str = "") -> None:
    from framecall.train import pretrain  # noqa: F401 - registers the builder of a missing base preset
    from framecall.train.grpo.config import SFTJobConfig
    from framecall.train.grpo.runner import fit_sft

    p = _parser(doc)
    p.add_argument("--model", help="backbone: tiny-omni | tiny-qwen2-audio | a local model path")
    args = p.parse_args(argv)
    _run(p, args, SFTJobConfig, {"base": args.model, "train.max_steps": args.max_steps}, fit_sft, "SFT")


def grpo_main(argv: list[str] | None = None, doc: str = "") -> None:
    from framecall.train import pretrain  # noqa: F401 - registers the builder of a missing base preset
    from framecall.train.grpo.config import GRPOJobConfig
    from framecall.train.grpo.runner import fit_grpo

    p = _parser(doc)
    p.add_argument("--policy", help="SFT checkpoint (its adapter is merged once) or a backbone (GRPO only)")
    p.add_argument("--rollout-actors", type=int, help="rollout actors (separate from the learner workers)")
    args = p.parse_args(argv)
    _run(p, args, GRPOJobConfig, {"policy": args.policy, "grpo.max_steps": args.max_steps,
                                  "rollout.num_actors": args.rollout_actors}, fit_grpo, "GRPO")
