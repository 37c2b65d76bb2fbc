"""Ray Tune sweeps over the training job: the interpolation weight lambda, the binary
class-weight scale, the learning rate, ... Each trial runs the very ``fit()`` of the
training jobs (a TorchTrainer of ``train_loop_per_worker``) with Tune's
``TuneReportCallback``, which forwards rank 0's validation reports to Tune; ASHA stops
weak trials between evaluations.

MLflow: one parent run for the sweep, one child run per trial (``mlflow.parentRunId``);
the best trial is tagged, and its full training config is written to
``OUTPUT/best_config.yaml``, which ``jobs/train_*.py --config`` accepts unchanged.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framecall.config import ConfigError, build_config, save_yaml, to_dict
from framecall.frames.losses import get_frame_loss
from framecall.train.config import TrainJobConfig

PARAM_TYPES = ("loguniform", "uniform", "choice", "grid")
SWEEPS = {
    # --loss interpolated: lambda over two decades, plus lambda = 0 (the token baseline) as its own trial
    "interpolated": {"base": ["train.objective=interpolated", "train.loss=poisson"],
                     "space": {"train.interp_lambda": {"type": "loguniform", "low": 0.01, "high": 1.0},
                               "train.lr": {"type": "loguniform", "low": 3e-4, "high": 3e-3}},
                     "baseline": {"train.interp_lambda": 0.0}},
    # --loss binary: the class-weight scale 0.25x-4x around #neg/#pos
    "binary": {"base": ["train.objective=frame", "train.loss=binary", "eval.default_decoder=topn_nms",
                        "eval.decoders=[topn_nms,topk]"],
               "space": {"train.loss_options.pos_weight_scale": {"type": "loguniform", "low": 0.25, "high": 4.0},
                         "train.lr": {"type": "loguniform", "low": 3e-4, "high": 3e-3}},
               "baseline": {}},
}


@dataclass
class SweepSection:
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Dotted training-config key -> {type: loguniform|uniform, low, high} or {type: choice|grid, values}."""
    baseline: dict[str, Any] = field(default_factory=dict)
    """One extra trial with these fixed values (e.g. train.interp_lambda: 0), run first."""
    num_samples: int = 8
    """Sampled trials (for grid: repeats of the whole grid)."""
    search: str = "random"
    """random | grid (every param must then be a grid)."""
    scheduler: str = "asha"
    """asha (stop weak trials at rungs) | fifo (run every trial to the end)."""
    grace_period: int = 1
    """Evaluations every trial gets before ASHA may stop it."""
    reduction_factor: int = 2
    max_concurrent_trials: int = 1
    """Trials at once; each takes ray.num_workers x ray.cpus_per_worker CPUs (and GPUs)."""
    metric: str = "select_metric"
    """A validation metric of the reports (select_metric = the job's checkpoint metric)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.search not in ("random", "grid"):
            raise ValueError(f"sweep.search must be random or grid, got {self.search!r}")
        if self.scheduler not in ("asha", "fifo"):
            raise ValueError(f"sweep.scheduler must be asha or fifo, got {self.scheduler!r}")
        if self.num_samples < 1 or self.max_concurrent_trials < 1 or self.grace_period < 1:
            raise ValueError("sweep.num_samples, max_concurrent_trials and grace_period must be >= 1")


def _check_param(key: str, spec: dict[str, Any]) -> list[Any]:
    """-> representative values of one parameter (for the config check); raises on a bad spec."""
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise ConfigError(f"sweep.space.{key}: type must be one of {list(PARAM_TYPES)}, got {kind!r}")
    if kind in ("choice", "grid"):
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.space.{key}: {kind} needs a non-empty list 'values'")
        return values
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) for v in (low, high)) or not low < high:
        raise ConfigError(f"sweep.space.{key}: needs numbers low < high, got low={low} high={high}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"sweep.space.{key}: loguniform needs low > 0, got {low}")
    return [low, high]


def validate_sweep(base: dict[str, Any], sweep: SweepSection) -> None:
    """Refuse a bad search space before any trial starts: unknown keys, empty choices,
    out-of-range values (every listed value and both bounds are built into a config)."""
    if not sweep.space:
        raise ConfigError("sweep.space is empty: nothing to sweep")
    if sweep.search == "grid" and any(s.get("type") != "grid" for s in sweep.space.values()):
        raise ConfigError("sweep.search=grid needs every parameter of type grid")
    points = [dict(sweep.baseline)] if sweep.baseline else []
    for key, spec in sweep.space.items():
        points += [{key: v} for v in _check_param(key, spec)]
    for point in points:
        cfg = trial_config(base, point)
        for key in point:  # loss options must be keyword arguments of the loss
            if key.startswith("train.loss_options."):
                name = key.rsplit(".", 1)[1]
                params = inspect.signature(get_frame_loss(cfg.train.loss)).parameters
                if name not in params:
                    raise ConfigError(f"sweep.space.{key}: loss {cfg.train.loss!r} has no option {name!r}; "
                                      f"it takes {[p for p in params][3:]}")


def trial_config(base: dict[str, Any], point: dict[str, Any]) -> TrainJobConfig:
    """The training config of one trial: the base config with the sampled values set."""
    overrides = [f"{k}={json.dumps(v)}" for k, v in point.items()]
    try:
        return build_config(TrainJobConfig, overrides=overrides, flags={}, base=base)
    except ValueError as e:
        raise ConfigError(f"sweep point {point}: {e}") from None


def _search_space(sweep: SweepSection) -> dict[str, Any]:
    from ray import tune

    space = {}
    for key, spec in sweep.space.items():
        kind = spec["type"]
        space[key] = {"loguniform": lambda s: tune.loguniform(s["low"], s["high"]),
                      "uniform": lambda s: tune.uniform(s["low"], s["high"]),
                      "choice": lambda s: tune.choice(s["values"]),
                      "grid": lambda s: tune.grid_search(s["values"])}[kind](spec)
    return space


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its sampled point (handed over with ``tune.with_parameters``,
    not through the search space)."""

    base: dict[str, Any]
    """The base TrainJobConfig as a dict; the point's dotted keys override it."""
    output: str
    tracking_uri: str
    parent_run_id: str
    experiment: str


@dataclass
class TrialSummary:
    """One trial of a finished sweep."""

    trial_id: str | None
    point: dict[str, Any]
    metric: float
    """Its best reported value of the sweep metric (NaN: it reported none)."""
    evaluations: int
    error: str | None
    outputs: dict[str, float] = field(default_factory=dict)
    """Each output's validation score at the trial's best evaluation."""


def _trial(point: dict[str, Any], context: TrialContext, datasets: dict | None = None) -> None:
    """One Tune trial: the training job's fit() with Tune reporting and a nested MLflow run.

    ``point``: the sampled values (dotted config keys); ``datasets``: the splits the sweep's driver
    prepared once, featurized and materialized unless ``data.cache_features`` is off.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    point = dict(point)
    cfg = trial_config(context.base, point)
    trial_dir = Path(context.output) / "trials" / tune.get_context().get_trial_id()
    cfg.output = str(trial_dir)
    cfg.mlflow.tracking_uri = context.tracking_uri
    cfg.mlflow.experiment = context.experiment
    cfg.mlflow.run_name = f"trial {tune.get_context().get_trial_id()}"
    cfg.mlflow.register = False
    fit_kwargs = {"callbacks": [TuneReportCallback()], "evaluate_test": False,
                  "run_tags": {"mlflow.parentRunId": context.parent_run_id, "framecall.sweep_point": json.dumps(point),
                               "framecall.trial_id": tune.get_context().get_trial_id()}}
    from framecall.train.runner import fit

    fit(cfg, datasets=datasets, **fit_kwargs)


@dataclass
class SweepResult:
    best_point: dict[str, Any]
    best_metric: float
    best_config_path: Path
    parent_run_id: str
    trials: list[TrialSummary]
    table: str
    wall_s: float


def run_sweep(base_cfg: TrainJobConfig, sweep: SweepSection, output: str | Path, resume: bool = False) -> SweepResult:
    """Run (or, with ``resume``, continue) the sweep; -> the best point, its config file, the table."""
    from ray import tune

    from framecall import tracking

    t0 = time.time()
    output = Path(output).resolve()
    # trials run in their own working directories: relative data paths must be made absolute here
    base_cfg.data.data_dir = str(Path(base_cfg.data.data_dir).resolve())
    base_cfg.data.mixture = {str(Path(d).resolve()): w for d, w in base_cfg.data.mixture.items()}
    base = to_dict(base_cfg)
    validate_sweep(base, sweep)  # before Ray, MLflow or any trial
    from framecall.data.shards import read_manifest
    from framecall.runtime import init_ray
    from framecall.train.runner import data_tasks, ensure_data, prepare_datasets

    data_dirs = ensure_data(base_cfg)  # a missing data directory fails here, not in every trial
    data_manifests = [read_manifest(d) for d in data_dirs]
    output.mkdir(parents=True, exist_ok=True)
    tracking_uri = base_cfg.mlflow.tracking_uri or tracking.default_tracking_uri(output)
    state_file = output / "sweep_state.json"
    # each trial holds a CPU besides its workers
    init_ray(base_cfg.ray.address, min_cpus=sweep.max_concurrent_trials
             * (base_cfg.ray.num_workers * base_cfg.ray.cpus_per_worker + 1))  # with the dashboard: Tune stops trials (see init_ray)
    # featurize once, here: every trial trains on the same rows (with data.cache_features=false,
    # for corpora larger than the object store, each trial streams the same lazy pipeline instead)
    datasets = prepare_datasets(base_cfg, data_dirs, data_manifests)
    tune_dir = output / "tune"
    name = "sweep"
    if resume:
        if not state_file.is_file() or not tune.Tuner.can_restore(str(tune_dir / name)):
            raise FileNotFoundError(f"--resume: no sweep to resume under {output}")
        parent = json.loads(state_file.read_text())["parent_run_id"]
    else:
        parent = tracking.start_run(tracking_uri, base_cfg.mlflow.experiment, output / "mlartifacts",
                                    base_cfg.mlflow.run_name or "sweep",
                                    params={"sweep": to_dict(sweep), "base": base},
                                    tags={"framecall.sweep": "parent", "framecall.loss": base_cfg.loss_name})
        state_file.write_text(json.dumps({"parent_run_id": parent}))
    context = TrialContext(base, str(output), tracking_uri, parent, base_cfg.mlflow.experiment)
    # a trial runs its Train controller; Tune captures its tasks in the trial's placement group
    trainable = tune.with_resources(tune.with_parameters(_trial, context=context, datasets=datasets), {"CPU": 1})
    tuner = _make_tuner(trainable, sweep, base_cfg, tune_dir / name, resume)
    grid = tuner.fit()
    outputs = output_columns(base_cfg, data_tasks(data_manifests))
    trials = _collect_trials(grid, sweep, outputs)
    done = [t for t in trials if t.metric == t.metric]
    if not done:
        raise RuntimeError(f"no trial reported {sweep.metric}: {[t.error for t in trials]}")
    # ties go to the earliest trial, so a resumed sweep (another result order) picks the same one
    best = max(sorted(done, key=lambda t: str(t.trial_id)), key=lambda t: t.metric)
    best_cfg = trial_config(base, best.point)
    best_cfg.output = str(output / "best_train")
    best_cfg.resume = False
    best_cfg.mlflow.tracking_uri = tracking_uri  # the retrained model lands beside the sweep's runs
    config_path = output / "best_config.yaml"
    save_yaml(best_cfg, config_path)
    logger = tracking.RunLogger(tracking_uri, parent)
    _close_children(tracking_uri, parent, best, trials, _max_evaluations(base_cfg))
    table = sweep_table(trials, sweep, base_cfg)
    logger.text(table, "sweep_table.md")
    logger.client.log_artifact(parent, str(config_path))
    logger.metrics({f"best_{sweep.metric}": best.metric}, step=0)
    logger.set_tag("framecall.best_point", json.dumps(best.point))
    logger.finish()
    (output / "sweep_table.md").write_text(table + "\n")
    return SweepResult(best.point, best.metric, config_path, parent, trials, table, time.time() - t0)


def _make_tuner(trainable, sweep: SweepSection, base_cfg: TrainJobConfig, path: Path, resume: bool):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    if resume:
        return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    points = [{**{k: _midpoint(s) for k, s in sweep.space.items()}, **sweep.baseline}] if sweep.baseline else None
    searcher = BasicVariantGenerator(points_to_evaluate=points, random_state=sweep.seed,
                                     max_concurrent=sweep.max_concurrent_trials)
    scheduler = (ASHAScheduler(time_attr="training_iteration", grace_period=sweep.grace_period,
                               reduction_factor=sweep.reduction_factor,
                               # one past the last evaluation: a trial that reaches the end finishes on
                               # its own (saves, shuts its workers down) instead of being stopped there
                               max_t=_max_evaluations(base_cfg) + 1)
                 if sweep.scheduler == "asha" else FIFOScheduler())
    return tune.Tuner(
        trainable, param_space=_search_space(sweep),
        tune_config=tune.TuneConfig(metric=sweep.metric, mode="max", search_alg=searcher, scheduler=scheduler,
                                    # the baseline point is one of the generator's samples: add it on top
                                    num_samples=sweep.num_samples + (1 if points else 0)),
        run_config=tune.RunConfig(name=path.name, storage_path=str(path.parent)),
    )


def _collect_trials(grid, sweep: SweepSection, outputs: list[str]) -> list[TrialSummary]:
    """Each trial's point, best reported metric, outputs at that evaluation, evaluations, error."""
    trials = []
    for r in grid:
        history = r.metrics_dataframe
        reported = history is not None and sweep.metric in history and len(history)
        best_row = history.loc[history[sweep.metric].idxmax()] if reported else None
        trials.append(TrialSummary(
            trial_id=r.metrics.get("trial_id") if r.metrics else None, point=dict(r.config),
            metric=float(best_row[sweep.metric]) if reported else float("nan"),
            evaluations=int(r.metrics.get("training_iteration", 0)) if r.metrics else 0,
            error=str(r.error)[:300] if r.error else None,
            outputs={c: float(best_row[c]) for c in outputs if reported and c in best_row}))
    return trials


def output_columns(cfg: TrainJobConfig, tasks: list[str]) -> list[str]:
    """Validation columns of the table: the selection metric of every output the model has
    (the Poisson/binary decoder and, for the interpolated loss, the generated tokens)."""
    from framecall.train.evaluation import select_metric_name

    metric = select_metric_name(tasks, cfg.train.select_metric).replace("@", "")
    names = [cfg.primary_output] + (["tokens"] if cfg.token_output and cfg.primary_output != "tokens" else [])
    return [f"val_{n}_{metric}" for n in names] + (["val_tokens_parse_failure_rate"] if cfg.token_output else [])


def _max_evaluations(cfg: TrainJobConfig) -> int:
    return max(1, -(-cfg.train.max_steps // cfg.train.eval_every))


def _midpoint(spec: dict[str, Any]) -> Any:
    if spec["type"] in ("choice", "grid"):
        return spec["values"][0]
    if spec["type"] == "loguniform":
        return float((spec["low"] * spec["high"]) ** 0.5)
    return float((spec["low"] + spec["high"]) / 2)


def _close_children(tracking_uri: str, parent: str, best: TrialSummary, trials: list[TrialSummary],
                    max_evals: int) -> None:
    """Tag the best trial's run; close the runs of trials that never finished their own run:
    Tune kills a trial that ASHA stops, and a killed sweep leaves its running trial's run open."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    finished = {r.data.tags.get("framecall.trial_id") for r in children if r.info.status == "FINISHED"}
    by_id = {t.trial_id: t for t in trials}
    for run in children:
        is_best = run.data.tags.get("framecall.sweep_point") == json.dumps(best.point)
        client.set_tag(run.info.run_id, "framecall.best_trial", str(is_best).lower())
        if run.info.status != "RUNNING":
            continue
        trial_id = run.data.tags.get("framecall.trial_id")
        trial = by_id.get(trial_id)
        if trial_id in finished or trial is None:
            why = "interrupted (the sweep was stopped; the trial ran again after --resume)"
        elif trial.error:
            why = f"error: {trial.error}"
        elif trial.evaluations < max_evals:
            why = "stopped early (ASHA)"
        else:
            why = "stopped by Tune after its last evaluation"
        client.set_tag(run.info.run_id, "framecall.trial_status", why)
        client.set_terminated(run.info.run_id, "FAILED" if trial and trial.error else "KILLED")


def sweep_table(trials: list[TrialSummary], sweep: SweepSection, base: TrainJobConfig) -> str:
    keys = list(sweep.space) + [k for k in sweep.baseline if k not in sweep.space]
    outputs = list(dict.fromkeys(c for t in trials for c in t.outputs))
    max_evals = _max_evaluations(base)
    lines = ["| " + " | ".join([*keys, sweep.metric, *outputs, "evaluations", "status"]) + " |",
             "|" + "---|" * (len(keys) + len(outputs) + 3)]
    for t in sorted(trials, key=lambda t: (-t.metric if t.metric == t.metric else 1e9, str(t.trial_id))):
        status = "error" if t.error else ("stopped early (ASHA)" if t.evaluations < max_evals else "finished")
        cells = [f"{t.point.get(k):.4g}" if isinstance(t.point.get(k), float) else str(t.point.get(k))
                 for k in keys]
        values = [f"{t.outputs[c]:.4f}" if c in t.outputs else "-" for c in outputs]
        lines.append("| " + " | ".join([*cells, f"{t.metric:.4f}", *values, str(t.evaluations), status]) + " |")
    return "\n".join(lines)
