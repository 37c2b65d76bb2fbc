"""Ray Tune sweeps: search-space validation up front, a real 2-trial sweep, resume."""

from pathlib import Path

import pytest

from framecall.config import ConfigError, build_config, to_dict
from framecall.train.config import TrainJobConfig
from framecall.train.sweep import SWEEPS, SweepSection, run_sweep, validate_sweep
from tests_helpers import train_config


def _sweep(**kw):
    tree = {"space": SWEEPS["interpolated"]["space"], "baseline": {"train.interp_lambda": 0.0}}
    tree.update(kw)
    return build_config(SweepSection, base=tree)


@pytest.mark.parametrize("space,message", [
    ({"train.interp_lambda": {"type": "loguniform", "low": -0.1, "high": 1.0}}, "loguniform needs low > 0"),
    ({"train.interp_lambda": {"type": "choice", "values": [-0.5, 0.1]}}, "interp_lambda must be >= 0"),
    ({"train.interp_lambda": {"type": "choice", "values": []}}, "non-empty list"),
    ({"train.lambdaa": {"type": "uniform", "low": 0.0, "high": 1.0}}, r"unknown config key\(s\) \['train.lambdaa'\]"),
    ({"train.loss_options.alpha": {"type": "uniform", "low": 0.0, "high": 1.0}}, "has no option 'alpha'"),
    ({"train.lr": {"type": "lognormal", "low": 0.1, "high": 1.0}}, "type must be one of"),
    ({"train.lr": {"type": "uniform", "low": 1.0, "high": 0.1}}, "low < high"),
    ({}, "sweep.space is empty"),
])
def test_invalid_search_space_is_refused_before_any_trial(space, message, tmp_path):
    base = build_config(TrainJobConfig, overrides=["train.objective=interpolated"])
    sweep = _sweep(space=space, baseline={})
    with pytest.raises(ConfigError, match=message):
        validate_sweep(to_dict(base), sweep)
    with pytest.raises(ConfigError, match=message):
        run_sweep(base, sweep, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()  # nothing started, nothing written


@pytest.mark.slow
def test_two_trial_sweep_tracks_children_writes_a_trainable_best_config_and_resumes(
        ray_session, tiny_words_all, mlflow_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    from framecall.train.runner import fit

    base = train_config(tmp_path, tiny_words_all, mlflow_uri, steps=4, **{
        "train.objective": "interpolated", "eval.max_new_tokens": 8, "ray.num_workers": 1,
        "mlflow.experiment": "sweep-test"})
    sweep = _sweep(num_samples=1, grace_period=1)  # the lambda = 0 baseline + 1 sampled trial
    result = run_sweep(base, sweep, tmp_path / "sweep")
    assert len(result.trials) == 2 and all(t.error is None for t in result.trials)
    assert sorted(t.point["train.interp_lambda"] == 0.0 for t in result.trials) == [False, True]
    assert all(t.evaluations >= 1 for t in result.trials)
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("sweep-test").experiment_id
    children = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert len(children) == 2
    assert sorted(c.data.tags["framecall.best_trial"] for c in children) == ["false", "true"]
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)  # none left open
    assert all("val/tokens_acc20ms" in c.data.metrics and "val/topn_nms_acc20ms" in c.data.metrics for c in children)
    parent = client.get_run(result.parent_run_id)
    assert "best_config.yaml" in {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert parent.info.status == "FINISHED" and "| train.interp_lambda |" in result.table
    # both outputs of the interpolated model, at each trial's best evaluation
    assert "| val_topn_nms_acc20ms | val_tokens_acc20ms | val_tokens_parse_failure_rate |" in result.table
    assert all(set(t.outputs) == {"val_topn_nms_acc20ms", "val_tokens_acc20ms", "val_tokens_parse_failure_rate"}
               for t in result.trials)
    # the best config trains as it is
    best = build_config(TrainJobConfig, result.best_config_path)
    assert best.train.interp_lambda == pytest.approx(result.best_point["train.interp_lambda"])
    trained = fit(best)
    assert trained.best_checkpoint.is_dir()
    # resuming the finished sweep re-runs nothing
    again = run_sweep(base, sweep, tmp_path / "sweep", resume=True)
    assert again.parent_run_id == result.parent_run_id and len(again.trials) == 2
    assert len(client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")) == 2


SWEEP_FILES = sorted((Path(__file__).parents[2] / "jobs/configs/sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_shipped_sweep_files_are_valid(path):
    from framecall.config import load_yaml

    sweep = build_config(SweepSection, base={"space": {}, "baseline": SWEEPS["interpolated"]["baseline"],
                                             **load_yaml(path)})
    base = build_config(TrainJobConfig, overrides=SWEEPS["interpolated"]["base"])
    validate_sweep(to_dict(base), sweep)
    assert sweep.space


def test_runs_left_open_by_stopped_or_interrupted_trials_are_closed_with_the_reason(mlflow_uri, tmp_path):
    # Tune kills a trial ASHA stops, and a killed sweep leaves its running trial's run open:
    # after the sweep no child run may stay RUNNING, and each says why it ended
    import json

    from mlflow.tracking import MlflowClient

    from framecall import tracking
    from framecall.train.sweep import TrialSummary, _close_children

    def child(trial_id, point, finish):
        run = tracking.start_run(mlflow_uri, "close-test", tmp_path / "art", f"trial {trial_id}", {}, {
            "mlflow.parentRunId": parent, "framecall.trial_id": trial_id, "framecall.sweep_point": json.dumps(point)})
        if finish:
            client.set_terminated(run, "FINISHED")
        return run

    client = MlflowClient(mlflow_uri)
    parent = tracking.start_run(mlflow_uri, "close-test", tmp_path / "art", "sweep", {}, {})
    points = [{"train.interp_lambda": v} for v in (0.0, 0.1, 0.2, 0.3)]
    runs = {"done": child("t0", points[0], True), "asha": child("t1", points[1], False),
            "killed_then_rerun": child("t2", points[2], False), "rerun": child("t2", points[2], True),
            "error": child("t3", points[3], False)}
    trials = [TrialSummary("t0", points[0], 0.5, 4, None), TrialSummary("t1", points[1], 0.1, 1, None),
              TrialSummary("t2", points[2], 0.2, 4, None), TrialSummary("t3", points[3], float("nan"), 0, "boom")]
    _close_children(mlflow_uri, parent, trials[0], trials, max_evals=4)
    got = {name: client.get_run(run_id) for name, run_id in runs.items()}
    assert {n: r.info.status for n, r in got.items()} == {
        "done": "FINISHED", "asha": "KILLED", "killed_then_rerun": "KILLED", "rerun": "FINISHED", "error": "FAILED"}
    assert got["asha"].data.tags["framecall.trial_status"] == "stopped early (ASHA)"
    assert got["killed_then_rerun"].data.tags["framecall.trial_status"].startswith("interrupted")
    assert got["error"].data.tags["framecall.trial_status"] == "error: boom"
    assert "framecall.trial_status" not in got["done"].data.tags
    assert [n for n, r in got.items() if r.data.tags["framecall.best_trial"] == "true"] == ["done"]
