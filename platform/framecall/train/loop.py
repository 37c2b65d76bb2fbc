"""The per-worker frame-head training loop (Ray Train ``train_loop_per_worker``).

Shared by every frame-loss job: the loss is picked by name from the registry. The loop is
four functions (torchtune's recipe layout): :func:`setup_worker` builds the model, optimizer
and data shards (and restores a checkpoint), :func:`train_step` runs one step, :func:`evaluate`
predicts on every rank's val shard and scores on rank 0, :func:`save_and_report` writes the
checkpoint and reports to Ray Train. Each step's phases are timed (:class:`PhaseTimer`) and
logged as ``time/data``, ``time/forward_backward``, ``time/optimizer``, ``time/eval``,
``time/checkpoint`` and ``time/data_fraction``.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from framecall.audio.augment import spec_augment
from framecall.config import from_dict
from framecall.data.collate import FrameCollator
from framecall.frames.losses import get_frame_loss
from framecall.frames.units import FrameGrid
from framecall.models.checkpoint import TRAINING_STATE, CheckpointError, CheckpointManifest, load_weights, write_manifest
from framecall.models.frame_model import FrameModel, build_frame_model, save_weights
from framecall.runtime import resolve_dtype
from framecall.prompts import resolve_system_prompt
from framecall.train.config import TrainJobConfig
from framecall.train.evaluation import flat_metrics, predict_batch, score_records, usable_decoders
from framecall.train.distributed import broadcast_object, gather_objects
from framecall.train.phases import PhaseTimer
from framecall.train.progress import ConsoleProgress

__all__ = ["TRAINING_STATE", "lr_lambda", "training_losses", "train_loop_per_worker"]


def lr_lambda(warmup: int, total: int):
    """Linear warm-up, then cosine decay to 10% of the peak."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return f


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


@dataclass
class Worker:
    """Everything one Ray Train worker holds between steps."""

    cfg: TrainJobConfig
    rank: int
    world: int
    model: torch.nn.Module
    """The prepared (DDP/FSDP-wrapped) model; :func:`_unwrap` gives the FrameModel."""
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    grid: FrameGrid
    collate: FrameCollator
    loss_fn: Any
    logger: Any
    """RunLogger on rank 0, None elsewhere."""
    base_manifest: CheckpointManifest
    timer: PhaseTimer
    step: int = 0
    best: float | None = None
    stale: int = 0
    epoch: int = 0
    epoch_batch: int = 0
    """Batches of ``epoch`` this worker has trained on (a restore skips them)."""


def _restore(worker: Worker, config: dict[str, Any]) -> Path | None:
    """Load the latest complete checkpoint of this run that verifies; -> its directory, or None.

    Not ``ray.train.get_checkpoint()``: that is the last checkpoint Ray's controller *registered*,
    and a report still waiting in the dead worker's result queue is never registered, so after a
    kill it can be a checkpoint or two behind what is on storage. Our completion marker is written
    only once the copy is whole, so the storage itself says what is latest. ``--resume`` (a new Ray
    run) finds the driver's verified pick the same way: it carries this run's MLflow id.
    """
    from framecall.train.checkpoints import pick_checkpoint, resume_candidates

    run_id = config["mlflow_run_id"]

    def same_run(path: Path, manifest: CheckpointManifest) -> None:
        if manifest.mlflow_run_id != run_id:
            raise CheckpointError(f"{path}: checkpoint of MLflow run {manifest.mlflow_run_id}, not {run_id}")

    pick = pick_checkpoint(resume_candidates(Path(config["checkpoint_root"])), accept=same_run,
                           log=print if worker.rank == 0 else (lambda _: None))
    if pick is None:
        return None
    _unwrap(worker.model).load_state_dict(load_weights(pick.path, pick.manifest), strict=False)
    state = torch.load(pick.path / TRAINING_STATE, weights_only=True, map_location="cpu")
    worker.optimizer.load_state_dict(state["optimizer"])
    worker.scheduler.load_state_dict(state["scheduler"])
    worker.step, worker.best, worker.stale = int(state["step"]), state["best"], int(state["stale"])
    worker.epoch, worker.epoch_batch = int(state.get("epoch", 0)), int(state.get("epoch_batch", 0))
    return pick.path


def _mark_restart(worker: Worker, restored: Path | None, config: dict[str, Any]) -> None:
    """Rank 0, at start: when the run already has metrics (a worker-group restart or --resume), tag
    the restart, log ``restarts`` at the restored step, and refuse every step up to the last one
    logged, so the re-trained steps between the checkpoint and the failure are not logged twice."""
    import ray.train

    logger = worker.logger
    if logger is None:
        return
    last = logger.last_logged_step()
    if last is None:  # store unreachable: at least never re-log what the checkpoint already covers
        last = worker.step if restored else -1
    if last < 0:
        return
    try:
        n = int(logger.client.get_run(logger.run_id).data.tags.get("framecall.restarts", "0")) + 1
    except Exception:  # noqa: BLE001 - the marker is bookkeeping; training goes on without it
        n = 1
    # Ray hands a checkpoint only to a restarted worker group; a first start with one is --resume
    cause = "--resume" if config.get("resume_from") and ray.train.get_checkpoint() is None \
        else "worker group restart"
    where = f"{restored} (step {worker.step})" if restored else "scratch (no complete checkpoint)"
    print(f"[framecall] restart {n} ({cause}): from {where}; metrics up to step {last} already logged")
    logger.set_tag("framecall.restarts", str(n))
    logger.set_tag(f"framecall.restart_{n}", f"{cause}: from {where}; last logged step {last}")
    logger.param(f"restart_{n}.from_step", str(worker.step))
    logger.metrics({"restarts": n}, worker.step)  # a key of its own, logged before the floor is set
    logger.floor = last


def setup_worker(config: dict[str, Any]) -> Worker:
    import ray.train
    import ray.train.torch

    cfg: TrainJobConfig = from_dict(TrainJobConfig, config["job"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.train.seed + rank)
    device = ray.train.torch.get_device()
    model = build_frame_model(cfg.model.name, cfg.head, cfg.model.subframes, cfg.model.finetune,
                              dtype=resolve_dtype(cfg.model.dtype, device), token_output=cfg.token_output,
                              token_order=cfg.token_prompt_order, lora_r=cfg.model.lora_r,
                              lora_alpha=cfg.model.lora_alpha, lora_targets=cfg.model.lora_targets,
                              head_bias=cfg.model.head_bias, head_weight_init=cfg.model.head_weight_init,
                              bidirectional_audio=cfg.model.bidirectional_audio,
                              attn_implementation=cfg.model.attn_implementation,
                              system_prompt=resolve_system_prompt(cfg.model.system_prompt))
    if cfg.model.gradient_checkpointing and device.type == "cuda":
        model.backbone.model.gradient_checkpointing_enable()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.train.warmup_steps, cfg.train.max_steps))
    logger = None
    if rank == 0:
        from framecall.tracking import RunLogger

        logger = RunLogger(config["tracking_uri"], config["mlflow_run_id"], background=True)
    grid = FrameGrid(model.backbone.frame_s, cfg.model.subframes)
    # waveform rows (data.featurize=worker) are featurized by the collator, a batch at once, where the model runs
    collate = FrameCollator(grid=grid, tokens_for_frames=model.backbone.tokens_for_frames,
                            feature_params=model.backbone.feature_params, device=device)
    worker = Worker(cfg, rank, world, model, params, optimizer, scheduler, grid, collate,
                    get_frame_loss(cfg.train.loss), logger, from_dict(CheckpointManifest, config["manifest"]),
                    PhaseTimer(sync_cuda=device.type == "cuda"))
    _mark_restart(worker, _restore(worker, config), config)
    strategy_kwargs = {"find_unused_parameters": True} if world > 1 and cfg.ray.strategy == "ddp" else {}
    worker.model = ray.train.torch.prepare_model(model, parallel_strategy=cfg.ray.strategy,
                                                 parallel_strategy_kwargs=strategy_kwargs)
    return worker


def train_step(w: Worker, batch: dict) -> dict[str, torch.Tensor]:
    """One optimizer step on ``batch``; -> the loss parts (see :func:`training_losses`)."""
    with w.timer.phase("forward_backward"):
        parts = training_losses(w.model, batch, w.cfg, w.loss_fn)
        w.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
    with w.timer.phase("optimizer"):
        parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(w.params, w.cfg.train.grad_clip)
        w.optimizer.step()
        w.scheduler.step()
    w.step += 1
    return parts


def _figure_item(batch: dict, rec: dict, b: int, decoder: str) -> dict:
    n_f = int(batch["feature_mask"][b].sum())
    return {"features": batch["features"][b, :, :n_f].cpu().numpy(), "scores": rec["scores"], "gold": rec["gold"],
            "pred": rec["preds"][decoder], "prompt": batch["prompts"][b]}


@torch.no_grad()
def evaluate(w: Worker, val_shard, decoders: list[str]) -> tuple[dict, list[dict]]:
    """Every rank predicts on its val shard (at most eval_max_items in all); rank 0's records
    and everyone's are gathered and scored. -> (scores by decoder, figure items of rank 0)."""
    cfg = w.cfg
    draw = cfg.eval.figures if cfg.head != "tokens" else 0
    w.model.eval()
    records: list[dict] = []
    figure_items: list[dict] = []
    limit = max(1, cfg.train.eval_max_items // w.world)
    for batch in val_shard.iter_torch_batches(batch_size=cfg.train.batch_size, collate_fn=w.collate):
        want_figures = w.rank == 0 and len(figure_items) < draw
        recs = predict_batch(_unwrap(w.model), batch, decoders, w.grid, cfg.head, cfg.eval.nms_min_separation,
                             keep_scores=want_figures, max_new_tokens=cfg.eval.max_new_tokens)
        if want_figures:
            figure_items += [_figure_item(batch, recs[b], b, cfg.eval.default_decoder)
                             for b in range(min(draw - len(figure_items), len(recs)))]
        for r in recs:
            r.pop("scores", None)
        records.extend(recs)
        if len(records) >= limit:
            break
    w.model.train()
    all_records = [r for part in gather_objects(records, w.world) for r in part]
    return score_records(all_records, decoders, cfg.eval.pairings, cfg.eval.conventions), figure_items


def _log_figures(w: Worker, figure_items: list[dict]) -> None:
    import matplotlib.pyplot as plt

    from framecall.train.figures import timestamp_figure

    fig = timestamp_figure(figure_items, w.grid.unit_s, w.cfg.head)
    w.logger.figure(fig, f"eval/step_{w.step:06d}.png")
    plt.close(fig)


def save_and_report(w: Worker, metrics: dict[str, Any], tasks: list[str], figure_items: list[dict]) -> None:
    """Rank 0 writes the checkpoint (weights, training state, manifest) and logs; every rank reports."""
    import ray.train

    from framecall.train.checkpoints import upload_complete

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if w.rank == 0:
            save_weights(_unwrap(w.model), Path(tmp))
            torch.save({"optimizer": w.optimizer.state_dict(), "scheduler": w.scheduler.state_dict(),
                        "step": w.step, "best": w.best, "stale": w.stale, "epoch": w.epoch,
                        "epoch_batch": w.epoch_batch}, Path(tmp) / TRAINING_STATE)
            write_manifest(tmp, replace(w.base_manifest, global_step=w.step, tasks=list(tasks),
                                        metrics={k: float(v) for k, v in metrics.items()}))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
            w.logger.metrics({k.replace("val_", "val/"): v for k, v in metrics.items() if k.startswith("val_")},
                             w.step)
            if figure_items:
                _log_figures(w, figure_items)
            metrics = {**metrics, "mlflow_lost_metrics": w.logger.lost}
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_fn=upload_complete)


def evaluate_and_save(w: Worker, val_shard, decoders: list[str], select_metric: str, tasks: list[str],
                      train_loss: float) -> bool:
    """Evaluate, track the best score, checkpoint and report; -> True when patience ran out."""
    with w.timer.phase("eval"):
        scores_by_decoder, figure_items = evaluate(w, val_shard, decoders)
    metrics = flat_metrics(scores_by_decoder, "val")
    value = scores_by_decoder[w.cfg.primary_output]["all"][select_metric]
    metrics.update({"step": w.step, "select_metric": value, "train_loss": train_loss})
    if w.best is None or value > w.best:
        w.best, w.stale = value, 0
    else:
        w.stale += 1
    stop = broadcast_object(w.cfg.train.patience > 0 and w.stale >= w.cfg.train.patience, w.world)
    with w.timer.phase("checkpoint"):
        save_and_report(w, metrics, tasks, figure_items)
    return stop


def _log_train(w: Worker, parts: dict[str, torch.Tensor], t_start: float) -> None:
    grad_norm = parts.pop("grad_norm")
    w.logger.metrics({**{f"train/{k}": v.item() for k, v in parts.items()},
                      "train/lr": w.scheduler.get_last_lr()[0], "train/grad_norm": float(grad_norm),
                      "train/seconds": time.time() - t_start, **w.timer.summary()}, w.step)


def epoch_batches(w: Worker, train_shard):
    """This epoch's training batches, without the ones a restored checkpoint already trained on
    (same shuffle seed as before the failure; the skipped batches are read, not trained)."""
    cfg = w.cfg
    batches = train_shard.iter_torch_batches(batch_size=cfg.train.batch_size, collate_fn=w.collate,
                                             local_shuffle_buffer_size=4 * cfg.train.batch_size,
                                             local_shuffle_seed=cfg.train.seed + 1000 * w.epoch + w.rank)
    return itertools.islice(batches, w.epoch_batch, None)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train

    w = setup_worker(config)
    cfg = w.cfg
    train_shard, val_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    decoders = usable_decoders(cfg.eval.decoders, cfg.head, cfg.token_output)
    t_start = time.time()
    w.model.train()
    progress = ConsoleProgress(cfg.train.max_steps, cfg.train.batch_size * w.world, start_step=w.step) \
        if w.rank == 0 else None  # one console line per ~50 steps or 10 s, beside the MLflow metrics
    done = w.step >= cfg.train.max_steps
    # SpecAugment on the worker, on the collated features of either data.featurize mode (after the
    # feature cache: cached rows get fresh masks); waveform augmentation ran in the Ray Data stage
    spec = cfg.data.augment.specaugment
    spec_gen = torch.Generator().manual_seed(cfg.data.augment.seed * 1000 + w.rank) if spec.enabled else None
    while not done:
        for batch in w.timer.timed_iter(epoch_batches(w, train_shard), "data"):
            w.epoch_batch += 1
            if spec_gen is not None:
                batch["features"] = spec_augment(batch["features"], batch["feature_mask"], spec, spec_gen)
            parts = train_step(w, batch)
            if progress is not None:
                progress.update(w.step, parts["loss"])
            if w.logger is not None and (w.step % 10 == 0 or w.step == 1):
                _log_train(w, dict(parts), t_start)
            if w.step % cfg.train.eval_every == 0 or w.step >= cfg.train.max_steps:
                done = evaluate_and_save(w, val_shard, decoders, config["select_metric"], config["tasks"],
                                         parts["loss"].item())
            done = done or w.step >= cfg.train.max_steps
            if done:
                break
        else:
            w.epoch, w.epoch_batch = w.epoch + 1, 0
    if w.logger is not None:  # phases since the last train log (the final evaluation and checkpoint)
        w.logger.metrics(w.timer.summary(), w.step)
        w.logger.flush()
        w.logger.metrics({"mlflow/lost_metrics": w.logger.lost, "mlflow/retries": w.logger.retried}, w.step)
        w.logger.flush()
