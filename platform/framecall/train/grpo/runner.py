"""Driver side of the multi-audio stages: checks, data, MLflow run, rollout actors, TorchTrainer.

``fit_sft(cfg)`` (jobs/train_sft.py) and ``fit_grpo(cfg)`` (jobs/train_grpo.py). Every input
error (policy without an adapter or of another backbone, a data directory without the split,
zero rollout actors, G < 2, unknown reward / advantage / KL names) is raised here, before any
actor or worker starts.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framecall import tracking
from framecall.config import to_dict
from framecall.models.backbone import backbone_spec, resolve_model_path
from framecall.models.checkpoint import (MANIFEST, TRAINING_STATE, CheckpointError, CheckpointManifest, LoraSpec,
                                         read_manifest)
from framecall.runtime import init_ray
from framecall.train.checkpoints import StoragePath, open_storage
from framecall.train.grpo.config import GRPOJobConfig, MultiDataSection, SFTJobConfig
from framecall.train.grpo.data import check_split, read_items


@dataclass
class StageResult:
    output: Path
    best_checkpoint: Path
    run_id: str
    tracking_uri: str
    registered_model: str | None
    wall_s: float


def ensure_poly_data(data: MultiDataSection) -> Path:
    """The PolyAudio shard directory, made with the generators when missing and allowed."""
    from framecall.data.shards import list_shards

    data_dir = Path(data.data_dir).resolve()
    try:
        list_shards(data_dir)
        return data_dir
    except FileNotFoundError:
        if not data.make_if_missing:
            raise
    from framecall.data.shards import ShardWriter
    from framecall.polyaudio.bench import PolyConfig, generate_items

    poly = PolyConfig(split=data.split, per_task=data.synth_per_task, tasks=list(data.synth_tasks))
    print(f"[framecall] no shards in {data_dir}: making {poly.per_task} PolyAudio items per task ({data.split})")
    with ShardWriter(data_dir, params={"polyaudio": to_dict(poly)}) as writer:
        writer.write_all(generate_items(poly))
    return data_dir


def start_or_resume(cfg: Any, output: Path, stage: str, tags: dict[str, str],
                    storage: StoragePath) -> tuple[str, str, Any]:
    """-> (tracking URI, MLflow run id, ``ray.train.Checkpoint`` to resume from or None): --resume
    continues the same run. The driver verifies a local copy; the learner reads the checkpoint where
    it is stored (a worker on another node cannot see the driver's copy)."""
    tracking_uri = cfg.mlflow.tracking_uri or tracking.default_tracking_uri(output)
    if cfg.resume:
        import ray.train

        from framecall.train.checkpoints import as_storage, pick_checkpoint, resume_candidates

        pick = pick_checkpoint(resume_candidates(storage), log=lambda _: None)
        if pick is None:
            raise CheckpointError(f"--resume: no checkpoint under {storage}")
        manifest = pick.manifest.check(pick.path, stage=stage)
        print(f"[framecall] resuming from {pick.source} at step {manifest.global_step}")
        where = as_storage(pick.source)  # the stored checkpoint, not the driver's verified copy
        return tracking_uri, str(manifest.mlflow_run_id), ray.train.Checkpoint(where.path, filesystem=where.fs)
    params = {**to_dict(cfg), "provenance": {"git_sha": tracking.git_sha(), **tracking.package_versions()}}
    run_id = tracking.start_run(tracking_uri, cfg.mlflow.experiment, output / "mlartifacts", cfg.mlflow.run_name,
                                params=params, tags={"framecall.stage": stage, **tags})
    return tracking_uri, run_id, None


def stage_manifest(stage: str, backbone: str, lora: LoraSpec, tasks: list[str], run_id: str, tracking_uri: str,
                   parent: str | None) -> CheckpointManifest:
    spec = backbone_spec(backbone)
    return CheckpointManifest(backbone=backbone, model_type=spec.model_type, head="tokens", loss=stage,
                              default_decoder="tokens", frame_s=spec.frame_s, subframes=1,
                              features=spec.feature_params, stage=stage, parent=parent, objective="tokens",
                              token_output=True, token_prompt_order="audio_first", finetune="lora", lora=lora,
                              tasks=tasks, mlflow_run_id=run_id, mlflow_tracking_uri=tracking_uri,
                              git_sha=tracking.git_sha())


def start_ray(cfg: Any, actors_cpus: float = 0.0) -> None:
    """Join ``ray.address``, or a local Ray sized for the learner workers, the rollout actors, and
    Train's controller plus Ray Data's read tasks (2 CPUs)."""
    init_ray(cfg.ray.address, min_cpus=cfg.ray.num_workers * cfg.ray.cpus_per_worker + actors_cpus + 2)


def run_trainer(loop, loop_config: dict[str, Any], datasets: dict, cfg: Any, storage: StoragePath):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from framecall.train.runner import run_storage, scaling_config

    trainer = TorchTrainer(
        loop, train_loop_config=loop_config, datasets=datasets,
        scaling_config=scaling_config(cfg.ray),
        run_config=RunConfig(name=f"run-{int(time.time())}", **run_storage(storage),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.ray.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=cfg.ray.max_failures)))
    with tracking.system_metrics(loop_config["tracking_uri"], loop_config["mlflow_run_id"], cfg.mlflow.system_metrics,
                                 cfg.mlflow.system_metrics_interval_s):
        return trainer.fit()


def finish_stage(result, output: Path, tracking_uri: str, run_id: str, cfg: Any, stage: str,
                 tasks: list[str], t0: float) -> StageResult:
    """Copy the last checkpoint to ``output/best``, log it, register it (``framecall-<stage>``)."""
    if result.checkpoint is None:
        raise RuntimeError(f"the {stage} run reported no checkpoint")
    best = output / "best"
    from framecall.train.checkpoints import COMPLETE, replace_dir

    replace_dir(StoragePath(result.checkpoint.filesystem, result.checkpoint.path), best,
                ignore=shutil.ignore_patterns(TRAINING_STATE, COMPLETE))
    logger = tracking.RunLogger(tracking_uri, run_id)
    logger.artifacts(best, "checkpoint")
    registered = None
    if cfg.mlflow.register:
        from framecall.models.registry import model_card, register_checkpoint

        name = cfg.mlflow.registered_model_name or f"framecall-{stage}"
        manifest = read_manifest(best)
        version = register_checkpoint(tracking_uri, run_id, name,
                                      tags={"framecall.stage": stage, "framecall.tasks": ",".join(tasks),
                                            "framecall.backbone": manifest.backbone,
                                            "framecall.policy_version": str(manifest.policy_version)},
                                      description=model_card(manifest, {}, f"{name}: {stage} on {', '.join(tasks)}"),
                                      alias=cfg.mlflow.alias)
        registered = f"models:/{name}/{version}"
        logger.set_tag("framecall.registered_model", registered)
    logger.finish()
    return StageResult(output, best, run_id, tracking_uri, registered, time.time() - t0)


def fit_sft(cfg: SFTJobConfig, storage_filesystem: Any = None) -> StageResult:
    """``storage_filesystem``: a pyarrow filesystem for the checkpoints (``ray.storage_path`` the path on it)."""
    from framecall.train.grpo.learner import lora_spec, sft_loop

    t0 = time.time()
    output = Path(cfg.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    resolve_model_path(cfg.base)
    data_dir = ensure_poly_data(cfg.data)
    tasks = sorted(check_split(data_dir, cfg.data.split, cfg.data.task_weights))
    storage = open_storage(cfg.ray.storage_path, output / "ray", storage_filesystem)  # after the input checks
    start_ray(cfg)
    tracking_uri, run_id, resume_from = start_or_resume(cfg, output, "sft", {"framecall.model": cfg.base},
                                                     storage)
    tracking.log_resolved_config(cfg, output, tracking_uri, run_id)
    manifest = stage_manifest("sft", cfg.base, lora_spec(cfg.lora), tasks, run_id, tracking_uri, parent=None)
    datasets = {"train": read_items(data_dir, cfg.data.split, cfg.data.task_weights or None, cfg.train.seed)}
    result = run_trainer(sft_loop, {"job": to_dict(cfg), "manifest": to_dict(manifest), "mlflow_run_id": run_id,
                                    "tracking_uri": tracking_uri,
                                    "resume_from": resume_from}, datasets, cfg, storage)
    return finish_stage(result, output, tracking_uri, run_id, cfg, "sft", tasks, t0)


def check_grpo_names(cfg: GRPOJobConfig) -> None:
    """Unknown reward, advantage, KL or aggregation names fail here, listing the valid ones."""
    from framecall.train.grpo.algos import get_advantage, get_kl, get_loss_agg
    from framecall.train.grpo.rewards import combine_rewards

    combine_rewards(cfg.grpo.rewards)
    get_advantage(cfg.grpo.advantage)
    get_kl(cfg.grpo.kl_estimator)
    get_loss_agg(cfg.grpo.loss_agg)


def policy_base(cfg: GRPOJobConfig, output: Path) -> tuple[str, str | None]:
    """-> (the base the GRPO adapter trains on, the parent checkpoint). An SFT/GRPO checkpoint's
    adapter is merged into its backbone once (``output/merged_base``); a backbone is used as is."""
    from framecall.models.adapters import adapter_digest, merge_into_base, merged_digests

    policy = Path(cfg.policy)
    if not (policy / MANIFEST).is_file():
        resolve_model_path(cfg.policy)  # GRPO only: reference = the base itself
        return cfg.policy, None
    manifest = read_manifest(policy).check(policy, stage=("sft", "grpo"))
    # the adapter was trained on this kind of backbone: one of another kind would not load into it
    manifest.check(policy, model_type=backbone_spec(manifest.backbone).model_type)
    digest = adapter_digest(policy, manifest)
    merged = output / "merged_base"
    if digest in merged_digests(merged):  # a resumed run: merged already, do not merge twice
        return str(merged), str(policy.resolve())
    shutil.rmtree(merged, ignore_errors=True)
    merge_into_base(policy, merged)
    return str(merged), str(policy.resolve())


def start_rollout_actors(cfg: GRPOJobConfig, base: str) -> list[Any]:
    import ray

    from framecall.train.grpo.rollout import PolicySpec, RolloutActor

    from framecall.runtime import actor_options, placed_device

    # the engine's device follows the placement: CUDA only on the GPU (share) Ray gave this actor
    spec = PolicySpec(backbone=base, lora=to_dict(lora_spec_of(cfg)), dtype=cfg.lora.dtype, seed=cfg.grpo.seed,
                      device=placed_device(cfg.rollout.gpus_per_actor))
    options = {**actor_options("rollout", cfg.rollout.cpus_per_actor, cfg.rollout.gpus_per_actor),
               "max_restarts": cfg.rollout.max_restarts, "max_task_retries": 0}
    remote: Any = ray.remote(RolloutActor).options(**options)  # type: ignore[attr-defined]
    actors = [remote.remote(spec) for _ in range(cfg.rollout.num_actors)]
    ray.get([a.held.remote() for a in actors])  # constructed, or the error now
    return actors


def lora_spec_of(cfg: GRPOJobConfig) -> LoraSpec:
    from framecall.train.grpo.learner import lora_spec

    return lora_spec(cfg.lora)


def fit_grpo(cfg: GRPOJobConfig, storage_filesystem: Any = None) -> StageResult:
    """``storage_filesystem``: a pyarrow filesystem for the checkpoints (``ray.storage_path`` the path on it)."""
    from framecall.train.grpo.step import grpo_loop

    t0 = time.time()
    output = Path(cfg.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    check_grpo_names(cfg)
    data_dir = ensure_poly_data(cfg.data)
    tasks = sorted(check_split(data_dir, cfg.data.split, cfg.data.task_weights))
    base, parent = policy_base(cfg, output)
    storage = open_storage(cfg.ray.storage_path, output / "ray", storage_filesystem)  # after the input checks
    start_ray(cfg, cfg.rollout.num_actors * cfg.rollout.cpus_per_actor)
    tracking_uri, run_id, resume_from = start_or_resume(cfg, output, "grpo", {"framecall.policy": cfg.policy},
                                                     storage)
    tracking.log_resolved_config(cfg, output, tracking_uri, run_id)
    manifest = stage_manifest("grpo", base, lora_spec_of(cfg), tasks, run_id, tracking_uri, parent)
    actors = start_rollout_actors(cfg, base)
    datasets = {"train": read_items(data_dir, cfg.data.split, cfg.data.task_weights or None, cfg.grpo.seed)}
    try:
        result = run_trainer(grpo_loop, {"job": to_dict(cfg), "base": base, "actors": actors,
                                         "manifest": to_dict(manifest), "mlflow_run_id": run_id,
                                         "tracking_uri": tracking_uri,
                                         "resume_from": resume_from},
                             datasets, cfg, storage)
    finally:
        import ray

        for a in actors:
            ray.kill(a, no_restart=True)
    return finish_stage(result, output, tracking_uri, run_id, cfg, "grpo", tasks, t0)
