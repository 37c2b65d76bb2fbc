"""Per-worker loops (Ray Train ``train_loop_per_worker``) of the multi-audio stages.

:func:`sft_loop`: LoRA SFT, the answer text (``<answer>..</answer>`` + end of turn) the only
supervised tokens. :func:`grpo_loop`: one GRPO step is the named, timed phases ``sample``,
``sync``, ``gen``, ``reward``, ``old_logprob``, ``ref``, ``adv``, ``update`` (verl's ``fit``).

Gradients of the adapter are all-reduced by hand across workers rather than through DDP's
wrapper: the log-prob passes call the peft model's inner modules, which DDP's forward hook
would not see, and adapter gradients are small.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from framecall.config import from_dict
from framecall.models.checkpoint import (ADAPTER_DIR, TRAINING_STATE, CheckpointManifest, LoraSpec,
                                         write_manifest)
from framecall.train.grpo.data import iterate_items, prompt_inputs
from framecall.train.grpo.policy import completion_logprobs
from framecall.train.phases import PhaseTimer


def lora_spec(section) -> LoraSpec:
    return LoraSpec(r=section.r, alpha=section.alpha, dropout=section.dropout, targets=list(section.targets),
                    modules_to_save=list(section.modules_to_save))


def _context() -> tuple[int, int, torch.device]:
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()


def _allreduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    if world == 1:
        return
    import torch.distributed as dist

    for p in params:
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        dist.all_reduce(grad)
        p.grad = grad / world


def target_ids(backbone, items: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded answer tokens (+ end of turn): ids [N, Lc], mask [N, Lc] bool."""
    tok = backbone.tokenizer
    rows = tok([it["target_text"] + "<|im_end|>" for it in items], add_special_tokens=False)["input_ids"]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(tok.pad_token_id))
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for b, r in enumerate(rows):
        ids[b, : len(r)], mask[b, : len(r)] = torch.tensor(r), True
    return ids, mask


def sft_loss(backbone, items: list[dict[str, Any]]) -> torch.Tensor:
    """Mean negative log-likelihood of the answer tokens given the clips and the question."""
    ids, mask = target_ids(backbone, items)
    logp = completion_logprobs(backbone, prompt_inputs(backbone, items), ids, mask)  # [N, Lc]
    return -(logp.sum() / mask.sum())


def save_policy(ckpt_dir: Path, backbone, manifest: CheckpointManifest, state: dict[str, Any]) -> None:
    """Adapter in peft's layout under ``adapter/``, the training state, the manifest (with digests)."""
    backbone.model.save_pretrained(str(ckpt_dir / ADAPTER_DIR))
    torch.save(state, ckpt_dir / TRAINING_STATE)
    write_manifest(ckpt_dir, replace(manifest, adapter=ADAPTER_DIR))


def report_checkpoint(rank: int, backbone, manifest: CheckpointManifest, state: dict[str, Any],
                      metrics: dict[str, float]) -> None:
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            save_policy(Path(tmp), backbone, manifest, state)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        from framecall.train.checkpoints import upload_complete

        # the completion marker: --resume (train.runner.latest_checkpoint) takes only complete checkpoints
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_fn=upload_complete)


def restore_state(backbone, optimizer, resume_from: Any = None) -> dict[str, Any] | None:
    """Ray's latest checkpoint after a worker restart, else ``--resume``'s ``ray.train.Checkpoint`` (on the
    run's storage: a learner on another node reads it there)."""
    import ray.train

    from framecall.models.adapters import ADAPTER_WEIGHTS
    from framecall.models.checkpoint import load_weights, read_manifest
    from framecall.train.grpo.policy import load_adapter_state

    resumed = ray.train.get_checkpoint() or resume_from
    if resumed is None:
        return None
    with resumed.as_directory() as d:
        adapter = load_weights(d, read_manifest(d), ADAPTER_WEIGHTS)
        state = torch.load(Path(d) / TRAINING_STATE, weights_only=True, map_location="cpu")
    load_adapter_state(backbone, adapter, state.get("version", -1))
    optimizer.load_state_dict(state["optimizer"])
    return state


def build_learner(spec_backbone: str, lora: LoraSpec, dtype: str, seed: int, lr: float, device: torch.device):
    """-> (backbone with a fresh adapter on ``device``, its trainable params, AdamW)."""
    from framecall.models.backbone import load_backbone
    from framecall.runtime import resolve_dtype
    from framecall.train.grpo.policy import attach_lora

    backbone = load_backbone(spec_backbone, dtype=resolve_dtype(dtype, device))
    attach_lora(backbone, lora, seed=seed)
    backbone.model.to(device)
    params = [p for p in backbone.model.parameters() if p.requires_grad]
    return backbone, params, torch.optim.AdamW(params, lr=lr)


def sft_loop(config: dict[str, Any]) -> None:
    import ray.train

    from framecall.tracking import RunLogger
    from framecall.train.grpo.config import SFTJobConfig

    cfg: SFTJobConfig = from_dict(SFTJobConfig, config["job"])
    rank, world, device = _context()
    torch.manual_seed(cfg.train.seed + rank)
    backbone, params, optimizer = build_learner(cfg.base, lora_spec(cfg.lora), cfg.lora.dtype, cfg.train.seed,
                                                cfg.train.lr, device)
    state = restore_state(backbone, optimizer, config.get("resume_from")) or {}
    step = int(state.get("step", 0))
    manifest = from_dict(CheckpointManifest, config["manifest"])
    logger = RunLogger(config["tracking_uri"], config["mlflow_run_id"]) if rank == 0 else None
    timer = PhaseTimer(sync_cuda=device.type == "cuda")
    batches = timer.timed_iter(iterate_items(ray.train.get_dataset_shard("train"), cfg.train.batch_size,
                                             cfg.train.seed + rank + 7 * step), "data")
    backbone.model.train()
    while step < cfg.train.max_steps:
        items = next(batches)
        with timer.phase("forward_backward"):
            loss = sft_loss(backbone, items)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with timer.phase("optimizer"):
            _allreduce_grads(params, world)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            for group in optimizer.param_groups:  # linear warm-up
                group["lr"] = cfg.train.lr * min(1.0, (step + 1) / max(1, cfg.train.warmup_steps))
            optimizer.step()
        step += 1
        metrics = {"train/loss": loss.item(), "train/grad_norm": float(grad_norm), **timer.summary()}
        if logger is not None:
            logger.metrics(metrics, step)
        if step % cfg.train.save_every == 0 or step >= cfg.train.max_steps:
            report_checkpoint(rank, backbone, replace(manifest, global_step=step),
                              {"optimizer": optimizer.state_dict(), "step": step}, {"step": step, "loss": loss.item()})
