"""The per-worker frame-head training loop (Ray Train ``train_loop_per_worker``).

Shared by every frame-loss job: the loss is picked by name from the registry. Each
worker builds the model, reads its shard of the "train" and "val" datasets, and at every
evaluation all ranks predict on their val shard, rank 0 gathers, scores, logs to MLflow,
writes the checkpoint, and every rank reports the same metrics to Ray Train.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from framecall.config import from_dict
from framecall.data.collate import FrameCollator
from framecall.frames.losses import get_frame_loss
from framecall.frames.units import FrameGrid
from framecall.models.frame_model import WEIGHTS, FrameModel, build_frame_model, save_weights, write_manifest
from framecall.train.config import TrainJobConfig
from framecall.train.evaluation import flat_metrics, predict_batch, score_records, usable_decoders

TRAINING_STATE = "training_state.pt"


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def lr_lambda(warmup: int, total: int):
    """Linear warm-up, then cosine decay to 10% of the peak."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj: Any, world: int) -> Any:
    if world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _unwrap(model) -> FrameModel:
    return model.module if hasattr(model, "module") else model


def training_losses(model, batch: dict, cfg: TrainJobConfig, frame_loss) -> dict[str, torch.Tensor]:
    """The objective's loss and its parts: "loss", and "frame_loss" / "token_loss" where trained.

    frame: P; tokens: T; interpolated: T + lambda * P (both from one forward pass where the
    token prompt puts the question first, see FrameModel.forward).
    """
    if cfg.train.objective == "frame":
        scores, mask = model(batch)  # [B, T], [B, T]
        out = {"scores": scores, "mask": mask}
    else:
        out = model(batch, mode="train")
    parts = {}
    if "scores" in out:
        scores = out["scores"]
        valid = out["mask"] & batch["subframe_mask"].to(scores.device)
        counts = batch["event_counts"].to(scores.device)
        parts["frame_loss"] = frame_loss(scores, counts, valid, **cfg.train.loss_options).mean()
    if "token_loss" in out:
        parts["token_loss"] = out["token_loss"]
    if cfg.train.objective == "frame":
        parts["loss"] = parts["frame_loss"]
    elif cfg.train.objective == "tokens":
        parts["loss"] = parts["token_loss"]
    else:
        parts["loss"] = parts["token_loss"] + cfg.train.interp_lambda * parts["frame_loss"]
    return parts


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    cfg: TrainJobConfig = from_dict(TrainJobConfig, config["job"])
    run_id, tracking_uri, base_manifest = config["mlflow_run_id"], config["tracking_uri"], config["manifest"]
    select_metric, tasks = config["select_metric"], config["tasks"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.train.seed + rank)
    device = ray.train.torch.get_device()
    dtype = resolve_dtype(cfg.model.dtype, device)

    model = build_frame_model(cfg.model.name, cfg.head, cfg.model.subframes, cfg.model.finetune, dtype=dtype,
                              token_output=cfg.token_output, token_order=cfg.token_prompt_order,
                              lora_r=cfg.model.lora_r, lora_alpha=cfg.model.lora_alpha,
                              lora_targets=cfg.model.lora_targets)
    if cfg.model.gradient_checkpointing and device.type == "cuda":
        model.backbone.model.gradient_checkpointing_enable()
    grid = FrameGrid(model.backbone.frame_s, cfg.model.subframes)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.train.warmup_steps, cfg.train.max_steps))
    step, best, stale = 0, None, 0

    # a restart after a worker failure (FailureConfig) restores Ray's latest checkpoint;
    # --resume hands the job's latest checkpoint directory in the config
    resumed = ray.train.get_checkpoint()
    if resumed is None and config.get("resume_from"):
        resumed = ray.train.Checkpoint.from_directory(config["resume_from"])
    if resumed is not None:
        from safetensors.torch import load_file

        with resumed.as_directory() as d:
            model.load_state_dict(load_file(str(Path(d) / WEIGHTS)), strict=False)
            state = torch.load(Path(d) / TRAINING_STATE, weights_only=True, map_location="cpu")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best, stale = int(state["step"]), state["best"], int(state["stale"])

    strategy_kwargs = {"find_unused_parameters": True} if world > 1 and cfg.ray.strategy == "ddp" else {}
    wrapped = ray.train.torch.prepare_model(model, parallel_strategy=cfg.ray.strategy,
                                            parallel_strategy_kwargs=strategy_kwargs)
    loss_fn = get_frame_loss(cfg.train.loss)
    collate = FrameCollator(grid=grid, tokens_for_frames=model.backbone.tokens_for_frames)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    logger = None
    if rank == 0:
        from framecall.train.tracking import RunLogger

        logger = RunLogger(tracking_uri, run_id)
    decoders = usable_decoders(cfg.eval.decoders, cfg.head, cfg.token_output)
    draw = cfg.eval.figures if cfg.head != "tokens" else 0

    @torch.no_grad()
    def evaluate() -> tuple[dict[str, float], list[dict]]:
        wrapped.eval()
        records, figure_items = [], []
        limit = max(1, cfg.train.eval_max_items // world)
        for batch in val_shard.iter_torch_batches(batch_size=cfg.train.batch_size, collate_fn=collate):
            want_figures = rank == 0 and len(figure_items) < draw
            recs = predict_batch(_unwrap(wrapped), batch, decoders, grid, cfg.head, cfg.eval.nms_min_separation,
                                 keep_scores=want_figures, max_new_tokens=cfg.eval.max_new_tokens)
            if want_figures:
                for b in range(min(draw - len(figure_items), len(recs))):
                    n_f = int(batch["feature_mask"][b].sum())
                    figure_items.append({"features": batch["features"][b, :, :n_f].numpy(),
                                         "scores": recs[b]["scores"], "gold": recs[b]["gold"],
                                         "pred": recs[b]["preds"][cfg.eval.default_decoder],
                                         "prompt": batch["prompts"][b]})
            for r in recs:
                r.pop("scores", None)
            records.extend(recs)
            if len(records) >= limit:
                break
        wrapped.train()
        all_records = [r for part in _gather(records, world) for r in part]
        return score_records(all_records, decoders), figure_items

    t_start = time.time()
    wrapped.train()
    done = step >= cfg.train.max_steps
    epoch = 0
    while not done:
        for batch in train_shard.iter_torch_batches(batch_size=cfg.train.batch_size, collate_fn=collate,
                                                    local_shuffle_buffer_size=4 * cfg.train.batch_size,
                                                    local_shuffle_seed=cfg.train.seed + 1000 * epoch + rank):
            parts = training_losses(wrapped, batch, cfg, loss_fn)
            loss = parts["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if logger is not None and (step % 10 == 0 or step == 1):
                logger.metrics({**{f"train/{k}": v.item() for k, v in parts.items()},
                                "train/lr": scheduler.get_last_lr()[0], "train/grad_norm": float(grad_norm),
                                "train/seconds": time.time() - t_start}, step)
            if step % cfg.train.eval_every == 0 or step >= cfg.train.max_steps:
                scores_by_decoder, figure_items = evaluate()
                metrics = flat_metrics(scores_by_decoder, "val")
                value = scores_by_decoder[cfg.primary_output]["all"][select_metric]
                metrics.update({"step": step, "select_metric": value, "train_loss": loss.item()})
                improved = best is None or value > best
                if improved:
                    best, stale = value, 0
                else:
                    stale += 1
                stop = cfg.train.patience > 0 and stale >= cfg.train.patience
                stop = _broadcast(stop, world)
                with tempfile.TemporaryDirectory() as tmp:
                    checkpoint = None
                    if rank == 0:
                        save_weights(_unwrap(wrapped), Path(tmp))
                        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "step": step, "best": best, "stale": stale}, Path(tmp) / TRAINING_STATE)
                        write_manifest(Path(tmp), {**base_manifest, "global_step": step, "tasks": tasks,
                                                   "metrics": {k: v for k, v in metrics.items()}})
                        checkpoint = ray.train.Checkpoint.from_directory(tmp)
                        logger.metrics({k.replace("val_", "val/"): v for k, v in metrics.items()
                                        if k.startswith("val_")}, step)
                        if figure_items:
                            from framecall.train.figures import timestamp_figure

                            import matplotlib.pyplot as plt

                            fig = timestamp_figure(figure_items, grid.unit_s, cfg.head)
                            logger.figure(fig, f"eval/step_{step:06d}.png")
                            plt.close(fig)
                    ray.train.report(metrics, checkpoint=checkpoint)
                if stop:
                    done = True
                    break
            if step >= cfg.train.max_steps:
                done = True
                break
        epoch += 1
