"""The GRPO learner: one step as named, timed phases, and its per-worker loop.

    sample       next prompts of this worker's data shard
    sync         publish (version, digest, adapter) to the rollout actors if they are behind;
                 re-sync any actor Ray restarted (it holds no version)
    gen          G completions per prompt from the actors, at exactly this version
    reward       registered rewards, weighted (accuracy, format, ...)
    old_logprob  the learner's log-probs of the completions under the weights that sampled them;
                 compared with the actors' own log-probs (the rollout-vs-learner mismatch)
    ref          log-probs with the adapter disabled: the SFT policy (merged into the base)
    adv          group advantages
    update       clipped policy loss + KL, backward, all-reduce, step; version += 1
"""

from __future__ import annotations

import functools
import random
from typing import Any

import torch

from framecall.config import from_dict
from framecall.models.checkpoint import CheckpointManifest
from framecall.train.grpo.algos import get_advantage, grpo_objective, masked_mean, zero_std_group_fraction
from framecall.train.grpo.data import iterate_items, prompt_inputs
from framecall.train.distributed import broadcast_object
from framecall.train.grpo.learner import (_allreduce_grads, _context, build_learner, lora_spec, report_checkpoint,
                                          restore_state)
from framecall.train.grpo.policy import SamplingConfig, adapter_state, completion_logprobs
from framecall.train.grpo.pool import RolloutPool
from framecall.train.grpo.rewards import combine_rewards
from framecall.train.phases import PhaseTimer


def reward_metrics(items: list[dict], texts: list[str], g: int, reward_fn) -> tuple[torch.Tensor, dict[str, float]]:
    """Rewards [P*G] of item-major completions, and reward/* metrics (overall, per part, per task)."""
    totals, parts_by_name, by_task = [], {}, {}
    for n, text in enumerate(texts):
        item = items[n // g]["judge"]
        total, parts = reward_fn(item, text)
        totals.append(total)
        for k, v in parts.items():
            parts_by_name.setdefault(k, []).append(v)
        by_task.setdefault(item["task"], []).append(total)
    rewards = torch.tensor(totals, dtype=torch.float32)
    metrics = {"reward/mean": float(rewards.mean()), "reward/std": float(rewards.std()) if len(totals) > 1 else 0.0,
               **{f"reward/{k}": sum(v) / len(v) for k, v in parts_by_name.items()},
               **{f"reward/task/{t}": sum(v) / len(v) for t, v in by_task.items()}}
    return rewards, metrics


def mismatch_metrics(learner: torch.Tensor, rollout: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How far the actors' sampling log-probs are from the learner's on the same tokens ([N, Lc] each)."""
    diff = (learner - rollout).abs()
    return {"rollout/logprob_abs_diff": float(masked_mean(diff, mask)),
            "rollout/prob_ratio_error": float(masked_mean((learner - rollout).exp().sub(1).abs(), mask))}


def grpo_step(ctx: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, float]:
    """One GRPO step on ``items`` (this worker's prompts); -> metrics. ``ctx`` holds the learner."""
    cfg, timer, pool, backbone = ctx["cfg"].grpo, ctx["timer"], ctx["pool"], ctx["backbone"]
    g = cfg.num_generations
    state_fn = functools.partial(adapter_state, backbone)
    with timer.phase("sync"):
        sync_s = 0.0
        if ctx["rank"] == 0 and pool.version != ctx["version"]:
            sync_s = pool.sync(ctx["version"], state_fn())
        elif ctx["rank"] == 0:
            pool.resync_restarted(state_fn)
        # every rank waits until the actors hold this version, then generates at it
        pool.adopt(*broadcast_object((pool.version, pool.digest), ctx["world"]))
    with timer.phase("gen"):
        seed = cfg.seed + 100003 * ctx["version"] + 17 * ctx["rank"]
        done, versions = pool.generate(items, g, ctx["sampling"], seed, state_fn)
    if set(versions) != {ctx["version"]}:
        raise RuntimeError(f"completions from versions {sorted(set(versions))} in a step at version {ctx['version']}")
    with timer.phase("reward"):
        rewards, metrics = reward_metrics(items, done.texts, g, ctx["reward_fn"])
    prompts = prompt_inputs(backbone, items, repeat=g)
    with timer.phase("old_logprob"), torch.no_grad():
        old = completion_logprobs(backbone, prompts, done.ids, done.mask).cpu()
    with timer.phase("ref"), torch.no_grad(), backbone.model.disable_adapter():
        ref = completion_logprobs(backbone, prompts, done.ids, done.mask).cpu()
    with timer.phase("adv"):
        advantages = get_advantage(cfg.advantage)(rewards.view(-1, g)).view(-1)  # [N]
    with timer.phase("update"):
        stats = update(ctx, prompts, done, old, ref, advantages)
    ctx["version"] += 1
    return {**metrics, **stats, **mismatch_metrics(old, done.logprobs, done.mask),
            "reward/zero_std_group_fraction": zero_std_group_fraction(rewards.view(-1, g)),
            "completion/length_mean": float(done.mask.sum(1).float().mean()), "weights/version": ctx["version"],
            "weights/sync_seconds": sync_s, "rollout/restarts": pool.restarts}


def update(ctx: dict[str, Any], prompts, done, old: torch.Tensor, ref: torch.Tensor,
           advantages: torch.Tensor) -> dict[str, float]:
    cfg, backbone, params, optimizer = ctx["cfg"].grpo, ctx["backbone"], ctx["params"], ctx["optimizer"]
    logp = completion_logprobs(backbone, prompts, done.ids, done.mask)  # [N, Lc] with the gradient
    device = logp.device
    loss, stats = grpo_objective(logp, old.to(device), ref.to(device), advantages.to(device), done.mask.to(device),
                                 clip_eps=cfg.clip_eps, kl_coef=cfg.kl_coef, kl_name=cfg.kl_estimator,
                                 agg=cfg.loss_agg)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _allreduce_grads(params, ctx["world"])
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    optimizer.step()
    return {"loss": stats["loss"], "pg_loss": stats["pg_loss"], "kl/mean": stats["kl/mean"],
            "clip_fraction": stats["clip_fraction"], "grad_norm": float(grad_norm)}


def setup_grpo(config: dict[str, Any]) -> dict[str, Any]:
    from framecall.tracking import RunLogger
    from framecall.train.grpo.config import GRPOJobConfig

    cfg: GRPOJobConfig = from_dict(GRPOJobConfig, config["job"])
    rank, world, device = _context()
    random.seed(cfg.grpo.seed + rank)
    backbone, params, optimizer = build_learner(config["base"], lora_spec(cfg.lora), cfg.lora.dtype, cfg.grpo.seed,
                                                cfg.grpo.lr, device)
    state = restore_state(backbone, optimizer, config.get("resume_from")) or {}
    return {"cfg": cfg, "rank": rank, "world": world, "backbone": backbone, "params": params,
            "optimizer": optimizer, "step": int(state.get("step", 0)), "version": int(state.get("version", 0)),
            "pool": RolloutPool(config["actors"], cfg.grpo.sync_timeout_s), "timer": PhaseTimer(device.type == "cuda", data_phase="sample"),
            "sampling": SamplingConfig(cfg.grpo.temperature, cfg.grpo.top_p, cfg.grpo.max_new_tokens),
            "reward_fn": combine_rewards(cfg.grpo.rewards),
            "manifest": from_dict(CheckpointManifest, config["manifest"]),
            "logger": RunLogger(config["tracking_uri"], config["mlflow_run_id"]) if rank == 0 else None}


def grpo_loop(config: dict[str, Any]) -> None:
    import ray.train
    from dataclasses import replace

    ctx = setup_grpo(config)
    cfg = ctx["cfg"].grpo
    batches = iterate_items(ray.train.get_dataset_shard("train"), cfg.prompts_per_step,
                            cfg.seed + ctx["rank"] + 7 * ctx["step"])
    while ctx["step"] < cfg.max_steps:
        with ctx["timer"].phase("sample"):
            items = next(batches)
        metrics = grpo_step(ctx, items)
        ctx["step"] += 1
        metrics.update(ctx["timer"].summary())
        if ctx["logger"] is not None:
            ctx["logger"].metrics(metrics, ctx["step"])
        if ctx["step"] % cfg.save_every == 0 or ctx["step"] >= cfg.max_steps:
            manifest = replace(ctx["manifest"], global_step=ctx["step"], policy_version=ctx["version"])
            state = {"optimizer": ctx["optimizer"].state_dict(), "step": ctx["step"], "version": ctx["version"]}
            report_checkpoint(ctx["rank"], ctx["backbone"], manifest, state,
                              {"step": ctx["step"], "reward_mean": metrics["reward/mean"]})
