"""Driver side of a frame-head training job: checks, data, MLflow run, TorchTrainer, test table.

``fit(cfg)`` is what ``jobs/train_poisson.py`` and ``jobs/train_binary.py`` call. Every
input error (unknown model, data directory without shards, a resume checkpoint of another
head type, unknown config keys) is raised here, before any worker starts.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from framecall.config import to_dict
from framecall.data.shards import list_shards, manifest_checksum, read_manifest as read_data_manifest
from framecall.models.backbone import backbone_spec, resolve_model_path
from framecall import tracking
from framecall.models.checkpoint import TRAINING_STATE, CheckpointError, CheckpointManifest, LoraSpec, read_manifest
from framecall.runtime import init_ray
from framecall.prompts import resolve_system_prompt
from framecall.train.checkpoints import (
    COMPLETE, Pick, StoragePath, open_storage, pick_checkpoint, replace_dir, resume_candidates, verify_complete,
)
from framecall.train.config import TrainJobConfig
from framecall.train.evaluation import select_metric_name
from framecall.train.progress import progress_bars_on


@dataclass
class FitResult:
    output: Path
    best_checkpoint: Path
    run_id: str
    tracking_uri: str
    test_scores: dict
    table: str
    wall_s: float
    registered_model: str | None = None
    """``models:/name/version`` of the best checkpoint, when registered."""


def data_tasks(data_manifests: list[dict]) -> list[str]:
    """The task names of the data directories' manifests, sorted."""
    return sorted({t for m in data_manifests for t in m.get("counts", {})})


def ensure_data(cfg: TrainJobConfig) -> list[Path]:
    """The shard directories of the run (several for a mixture), made synthetically if allowed."""
    if cfg.data.mixture:
        dirs = [Path(d).resolve() for d in cfg.data.mixture]
        for d in dirs:
            list_shards(d)  # a missing source is an error: a mixture is never synthesised silently
        return dirs
    from framecall.data.synthetic import SynthConfig, ensure_synthetic

    data = cfg.data
    heldout = data.synth_heldout_num if data.synth_task != "events" else 0  # events have no voices
    synth = SynthConfig(task=data.synth_task, num=data.synth_num, seed=data.synth_seed,
                        max_seconds=data.synth_max_seconds, heldout_num=heldout,
                        heldout_voices=list(data.synth_heldout_voices) if heldout else [],
                        target_format=data.synth_target_format)
    # made if missing; a corpus this job made earlier with other parameters is rebuilt or refused
    return [ensure_synthetic(data.data_dir, synth, data.make_if_missing)]


def mix_datasets(parts: list[tuple[Any, float]], seed: int):
    """Weighted mixture of Ray Datasets: round(N * w / sum(w)) rows from each (N = all rows),
    a source repeated when it has fewer, then one global shuffle so batches mix tasks."""
    if len(parts) == 1:
        return parts[0][0]
    counts = [ds.count() for ds, _ in parts]
    total, wsum = sum(counts), sum(w for _, w in parts)
    mixed = []
    for (ds, w), n in zip(parts, counts):
        want = max(1, round(total * w / wsum))
        copies = [ds] * -(-want // n)  # ceil
        mixed.append((copies[0].union(*copies[1:]) if len(copies) > 1 else ds).limit(want))
    return mixed[0].union(*mixed[1:]).random_shuffle(seed=seed)


def latest_checkpoint(output: Path, storage: StoragePath | None = None) -> Path | None:
    """The complete checkpoint with the highest global step on ``storage`` (default ``output/ray``) that
    verifies (see :mod:`framecall.train.checkpoints`), as a local directory; None when there is none."""
    pick = pick_checkpoint(resume_candidates(storage or output / "ray"), log=lambda _: None)
    return pick.path if pick else None


def use_gpu(setting: str) -> bool:
    """ray.use_gpu: true | false | auto (when the cluster has GPUs Ray detected; logical GPUs declared on a
    CPU machine, as in the tests, would hand the workers a CUDA device that is not there)."""
    import ray

    from framecall.runtime import detected_gpus

    if setting == "true":
        return True
    if setting == "false":
        return False
    return detected_gpus(ray.cluster_resources())


def scaling_config(ray_cfg: Any):
    """Ray Train's ScalingConfig for a ``ray`` section: each worker asks for cpus_per_worker CPUs and, with
    use_gpu, gpus_per_worker GPUs (the worker's device is then the GPU Ray assigned it)."""
    from ray.train import ScalingConfig

    gpu = use_gpu(ray_cfg.use_gpu)
    resources = {"CPU": ray_cfg.cpus_per_worker, **({"GPU": ray_cfg.gpus_per_worker} if gpu else {})}
    return ScalingConfig(num_workers=ray_cfg.num_workers, use_gpu=gpu, resources_per_worker=resources)


def prepare_datasets(cfg: TrainJobConfig, data_dirs: list[Path], data_manifests: list[dict],
                     materialize: bool | None = None) -> dict:
    """{"train", "val"} Ray Datasets of featurized rows: the train split mixed by the weights of
    ``data.sources``, validation every row of every source. ``materialize`` (default
    ``data.cache_features``) runs the featurizing now, so that the workers only read blocks.
    """
    from framecall.data.pipeline import PipelineConfig, build_dataset

    materialize = cfg.data.cache_features if materialize is None else materialize
    spec = backbone_spec(cfg.model.name)
    pipe = PipelineConfig(bad_rows=cfg.data.bad_rows, features=spec.feature_params, num_cpus=0.5,
                          max_seconds=30.0 if spec.model_type == "qwen2_audio" else 600.0,
                          featurize=cfg.data.featurize)
    augment = cfg.data.augment if cfg.data.augment.waveform else None
    bars = progress_bars_on(cfg.data.progress_bars)  # where a person watches; not in logs and tests
    datasets = {}
    for name, split in (("train", cfg.data.train_split), ("val", cfg.data.val_split)):
        parts = []
        # waveform augmentation: training split only, and never cached (each epoch draws afresh)
        split_pipe = replace(pipe, augment=augment) if name == "train" else pipe
        cache = materialize and split_pipe.augment is None
        for data_dir, data_manifest, weight in zip(data_dirs, data_manifests, cfg.data.sources.values()):
            ds = build_dataset(data_dir, split_pipe, split=split).dataset
            ds.context.enable_progress_bars = bars
            ds = ds.materialize() if cache else ds
            # uncached: count from the manifest (ds.count() would featurize, and augment, every row once)
            rows = ds.count() if cache else sum(c.get(split, 0) for c in data_manifest.get("counts", {}).values())
            if rows == 0:
                raise ValueError(f"{data_dir}: split {split!r} has no rows; splits present: "
                                 f"{data_manifest.get('counts')}")
            parts.append((ds, weight))
        if name == "train":
            datasets[name] = mix_datasets(parts, cfg.train.seed)
            if cache and len(parts) > 1:
                # run the mixture's shuffle now: once the workers hold every CPU it could not be scheduled
                datasets[name] = datasets[name].materialize()
        else:  # validation: every row of every source, scored per task
            datasets[name] = parts[0][0].union(*[p for p, _ in parts[1:]]) if len(parts) > 1 else parts[0][0]
        datasets[name].context.enable_progress_bars = bars
    return datasets


def _local_refusals(root: Path, fits) -> list[str]:
    """Why each checkpoint directory under a local ``root`` (marked or not) cannot be resumed from."""
    reasons = []
    for ckpt in sorted(m.parent for m in root.glob("**/manifest.json")):
        try:  # a config mismatch first: the user's error, whatever the state of the files
            fits(ckpt, read_manifest(ckpt))
            verify_complete(ckpt)
        except CheckpointError as e:
            reasons.append(str(e))
    return reasons


def resume_point(cfg: TrainJobConfig, storage: StoragePath) -> tuple[Pick | None, str | None]:
    """--resume: (the latest complete checkpoint on ``storage`` that verifies and fits the config, its
    MLflow run id); else (None, None). Runs on the driver before any worker starts: a broken latest
    checkpoint falls back to the previous complete one; with none left the error names every file refused."""
    if not cfg.resume:
        return None, None

    def fits(path: Path, manifest: CheckpointManifest) -> None:
        manifest.check(path, head=cfg.head, subframes=cfg.model.subframes, stage="frame")

    refused: list[str] = []  # on other storage: the marked candidates' refusals (unmarked ones are not listed)

    def log(line: str) -> None:
        print(line)
        refused.append(line.split(": ", 1)[-1])

    pick = pick_checkpoint(resume_candidates(storage), accept=fits, log=log)
    if pick is None:
        reasons = _local_refusals(Path(storage.path), fits) if storage.local else refused
        raise CheckpointError(f"--resume: no complete checkpoint under {storage}"
                              + (": " + "; ".join(reasons) if reasons else ""))
    print(f"[framecall] resuming from {pick.source} at step {pick.manifest.global_step}")
    return pick, pick.manifest.mlflow_run_id


def note_fallback(pick: Pick | None, tracking_uri: str, run_id: str) -> None:
    """Tag the run when --resume passed over broken newer checkpoints (the log already says so)."""
    if pick is not None and pick.skipped:
        logger = tracking.RunLogger(tracking_uri, run_id)
        logger.set_tag("framecall.resume_fallback",
                       f"resumed from {pick.source} (step {pick.manifest.global_step}); refused: "
                       + " | ".join(pick.skipped)[:4000])


def frame_manifest(cfg: TrainJobConfig, data_dirs: list[Path], run_id: str, tracking_uri: str,
                   provenance: dict[str, str]) -> CheckpointManifest:
    """The manifest every checkpoint of this run carries (the loop adds step, tasks, metrics)."""
    spec = backbone_spec(cfg.model.name)  # feature parameters belong to the adapter; no weights loaded
    features, frame_s, model_type = spec.feature_params, spec.frame_s, spec.model_type
    prompt_order = "question_first"  # frame heads: the question conditions the audio states
    return CheckpointManifest(
        backbone=cfg.model.name, model_type=model_type, head=cfg.head, loss=cfg.loss_name,
        objective=cfg.train.objective, default_decoder=cfg.primary_output, token_output=cfg.token_output,
        token_prompt_order=cfg.token_prompt_order,
        interp_lambda=cfg.train.interp_lambda if cfg.train.objective == "interpolated" else None,
        mixture={str(d): w for d, w in zip(data_dirs, cfg.data.sources.values())}, frame_s=frame_s,
        subframes=cfg.model.subframes, prompt_order=prompt_order, features=features, finetune=cfg.model.finetune,
        lora=LoraSpec(cfg.model.lora_r, cfg.model.lora_alpha, targets=list(cfg.model.lora_targets))
        if cfg.model.finetune == "lora" else None,
        mlflow_run_id=run_id, mlflow_tracking_uri=tracking_uri, git_sha=provenance["git_sha"],
        data_manifest_sha256=provenance["data_manifest_sha256"], nms_min_separation=cfg.eval.nms_min_separation,
        head_init_bias=cfg.head_init_bias,
        bidirectional_audio=cfg.model.bidirectional_audio,
        system_prompt=resolve_system_prompt(cfg.model.system_prompt))


def fit(cfg: TrainJobConfig, callbacks: list | None = None, run_tags: dict[str, str] | None = None,
        evaluate_test: bool = True, datasets: dict | None = None, storage_filesystem: Any = None) -> FitResult:
    """Train (Ray Train, ``cfg.ray.num_workers`` workers), then evaluate the best checkpoint on
    the test split, log and register it.

    ``callbacks``: extra Ray Train callbacks (a Tune trial passes TuneReportCallback);
    ``run_tags``: extra MLflow tags (``mlflow.parentRunId`` nests a trial under its sweep);
    ``evaluate_test=False`` stops after training (sweep trials compare on validation);
    ``datasets``: the result of ``prepare_datasets`` for this config, made once by a sweep's
    driver for all its trials (no Ray Data execution inside a trial besides the workers' reads);
    ``storage_filesystem``: a pyarrow filesystem the checkpoints go to, ``ray.storage_path`` being the
    path on it (Ray Train's ``RunConfig(storage_filesystem=...)``).
    """
    t0 = time.time()
    output = Path(cfg.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    resolve_model_path(cfg.model.name)  # unknown model: fail before anything starts
    storage = open_storage(cfg.ray.storage_path, output / "ray", storage_filesystem)
    resume_from, run_id = resume_point(cfg, storage)
    data_dirs = ensure_data(cfg)
    data_manifests = [read_data_manifest(d) for d in data_dirs]
    tasks = data_tasks(data_manifests)
    select_metric = select_metric_name(tasks, cfg.train.select_metric)

    # a streamed training split (no feature cache, or waveform augmentation) needs logical CPUs for
    # Ray Data's list/read/map tasks beside the workers', or it waits for them forever (seen on 2 cores)
    streams = not cfg.data.cache_features or cfg.data.augment.waveform
    init_ray(cfg.ray.address, min_cpus=cfg.ray.num_workers * cfg.ray.cpus_per_worker + 2 if streams else None)

    if datasets is None:
        datasets = prepare_datasets(cfg, data_dirs, data_manifests)

    tracking_uri = cfg.mlflow.tracking_uri or tracking.default_tracking_uri(output)
    provenance = {"git_sha": tracking.git_sha(),
                  "data_manifest_sha256": ",".join(manifest_checksum(d) for d in data_dirs),
                  "data_dir": ",".join(str(d) for d in data_dirs),
                  **{f"version.{k}": v for k, v in tracking.package_versions().items()}}
    if run_id is None:
        run_id = tracking.start_run(
            tracking_uri, cfg.mlflow.experiment, output / "mlartifacts", cfg.mlflow.run_name,
            params={**to_dict(cfg), "provenance": provenance, "seed": cfg.train.seed},
            tags={"framecall.head": cfg.head, "framecall.loss": cfg.loss_name, "framecall.tasks": ",".join(tasks),
                  "framecall.model": cfg.model.name, **(run_tags or {})},
        )
    note_fallback(resume_from, tracking_uri, run_id)
    tracking.log_resolved_config(cfg, output, tracking_uri, run_id)  # output/config.resolved.yaml + artifact
    base_manifest = frame_manifest(cfg, data_dirs, run_id, tracking_uri, provenance)
    loop_config = {"job": to_dict(cfg), "mlflow_run_id": run_id, "tracking_uri": tracking_uri,
                   "manifest": to_dict(base_manifest), "select_metric": select_metric, "tasks": tasks,
                   # Train V2 deprecates resume_from_checkpoint: the loop finds its checkpoint itself
                   "resume_from": str(resume_from.source) if resume_from else None,
                   "checkpoint_root": storage.path}  # a worker reads it on the run's storage filesystem
    trainer = make_trainer(cfg, loop_config, storage, datasets, callbacks)
    try:
        with tracking.system_metrics(tracking_uri, run_id, cfg.mlflow.system_metrics,
                                     cfg.mlflow.system_metrics_interval_s):
            result = trainer.fit()
        log_lost_metrics(result.metrics or {}, tracking_uri, run_id)
        best = max(result.best_checkpoints, key=lambda cm: cm[1]["select_metric"])[0] if result.best_checkpoints \
            else result.checkpoint
        stored_best = StoragePath(best.filesystem, best.path)
        if not evaluate_test:
            tracking.RunLogger(tracking_uri, run_id).finish()
            if not stored_best.local:  # the caller reads it as a directory
                replace_dir(stored_best, output / "best", ignore=shutil.ignore_patterns(TRAINING_STATE, COMPLETE))
            trained = Path(best.path) if stored_best.local else output / "best"
            return FitResult(output, trained, run_id, tracking_uri, {}, "", time.time() - t0)
        best_dir = output / "best"
        replace_dir(stored_best, best_dir, ignore=shutil.ignore_patterns(TRAINING_STATE, COMPLETE))
        scores, table, registered = finish_run(cfg, best_dir, data_dirs, tasks, tracking_uri, run_id)
    except BaseException as e:  # the run must not stay RUNNING in MLflow (KeyboardInterrupt: KILLED)
        tracking.RunLogger(tracking_uri, run_id, retries=2).finish("FAILED" if isinstance(e, Exception) else "KILLED")
        raise
    return FitResult(output, best_dir, run_id, tracking_uri, scores, table, time.time() - t0, registered)


def make_trainer(cfg: TrainJobConfig, loop_config: dict[str, Any], storage: StoragePath, datasets: dict,
                 callbacks: list | None):
    """The TorchTrainer of a frame-head run: Ray restarts the worker group up to ray.max_failures times."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from framecall.train.loop import train_loop_per_worker

    return TorchTrainer(
        train_loop_per_worker, train_loop_config=loop_config,
        scaling_config=scaling_config(cfg.ray),
        run_config=RunConfig(
            name=f"run-{int(time.time())}", **run_storage(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.ray.keep_checkpoints,
                                               checkpoint_score_attribute="select_metric",
                                               checkpoint_score_order="max"),
            failure_config=FailureConfig(max_failures=cfg.ray.max_failures),
            callbacks=callbacks,
        ),
        datasets=datasets,
    )


def run_storage(storage: StoragePath) -> dict[str, Any]:
    """RunConfig's storage arguments: a local path alone, else the path on its pyarrow filesystem."""
    return {"storage_path": storage.path, "storage_filesystem": None if storage.local else storage.fs}


def log_lost_metrics(final_metrics: dict[str, Any], tracking_uri: str, run_id: str) -> None:
    """Put rank 0's count of metric values MLflow never took (``mlflow/lost_metrics``) in the run."""
    lost = int(final_metrics.get("mlflow_lost_metrics", 0))
    if lost:
        print(f"[framecall] MLflow lost {lost} metric value(s) of this run (store unavailable past the retries)")
    tracking.RunLogger(tracking_uri, run_id).metrics({"mlflow/lost_metrics": lost},
                                                     step=int(final_metrics.get("step", 0)))


def evaluate_extra_splits(cfg: TrainJobConfig, best_dir: Path, data_dirs: list[Path],
                          tasks: list[str]) -> dict[str, tuple[dict, str]]:
    """{split: (scores, table)} for each of ``data.extra_test_splits`` the data has (held-out voices)."""
    from framecall.train.evaluate import evaluate_checkpoint

    out = {}
    for split in cfg.data.extra_test_splits:
        dirs = [d for d in data_dirs
                if any(split in by_split for by_split in read_data_manifest(d).get("counts", {}).values())]
        if not dirs:  # corpora from make_data.py or converters may have none
            print(f"[framecall] data.extra_test_splits: no {split!r} rows in {[str(d) for d in data_dirs]}")
            continue
        scores, table, _ = evaluate_checkpoint(best_dir, dirs, split=split, decoders=[*cfg.eval.decoders, "tokens"],
                                               max_new_tokens=cfg.eval.max_new_tokens,
                                               pairings=cfg.eval.pairings, convention=cfg.eval.conventions,
                                               title=f"{cfg.loss_name} on {', '.join(tasks)} ({split} split)")
        out[split] = (scores, table)
    return out


def finish_run(cfg: TrainJobConfig, best_dir: Path, data_dirs: list[Path], tasks: list[str], tracking_uri: str,
               run_id: str) -> tuple[dict, str, str | None]:
    """Evaluate the best checkpoint on the test split, log table + checkpoint to the run, register
    it; -> (scores, table, ``models:/name/version`` or None)."""
    from framecall.train.evaluate import evaluate_checkpoint
    from framecall.train.evaluation import flat_metrics

    output = best_dir.parent
    scores, table, _ = evaluate_checkpoint(best_dir, data_dirs, split=cfg.data.test_split,
                                           decoders=[*cfg.eval.decoders, "tokens"], max_new_tokens=cfg.eval.max_new_tokens,
                                           pairings=cfg.eval.pairings, convention=cfg.eval.conventions,
                                           title=f"{cfg.loss_name} on {', '.join(tasks)} ({cfg.data.test_split} split)")
    logger = tracking.RunLogger(tracking_uri, run_id)
    logger.metrics({k.replace("test_", "test/"): v for k, v in flat_metrics(scores, "test").items()},
                   step=read_manifest(best_dir).global_step)
    extra = evaluate_extra_splits(cfg, best_dir, data_dirs, tasks)
    for split, (split_scores, split_table) in extra.items():
        logger.metrics({k.replace(f"{split}_", f"{split}/", 1): v for k, v in flat_metrics(split_scores, split).items()},
                       step=read_manifest(best_dir).global_step)
        (output / f"test_metrics_{split}.json").write_text(json.dumps(split_scores, indent=2))
        table = f"{table}\n\n{split_table}"
    logger.text(table, "test_table.md")
    logger.artifacts(best_dir, "checkpoint")
    registered = None
    if cfg.mlflow.register:
        from framecall.models.registry import model_card, register_checkpoint

        name = cfg.mlflow.registered_model_name or f"framecall-{cfg.loss_name.replace('+', '-')}"
        summary = scores[cfg.primary_output]["all"]
        card = model_card(read_manifest(best_dir), {f"{cfg.primary_output} {k}": v for k, v in summary.items()},
                          f"{name}: {cfg.loss_name} on {', '.join(tasks)}")
        version = register_checkpoint(
            tracking_uri, run_id, name,
            tags={"framecall.tasks": ",".join(tasks), "framecall.head": cfg.head, "framecall.loss": cfg.loss_name,
                  "framecall.default_decoder": cfg.primary_output, "framecall.backbone": cfg.model.name,
                  **{f"test.{k.replace('@', '_at_')}": f"{v:.6g}" for k, v in summary.items()}},
            description=card, alias=cfg.mlflow.alias)
        registered = f"models:/{name}/{version}"
        logger.set_tag("framecall.registered_model", registered)
    logger.finish()
    (output / "test_table.md").write_text(table + "\n")
    (output / "test_metrics.json").write_text(json.dumps(scores, indent=2))
    return scores, table, registered
