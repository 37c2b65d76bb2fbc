"""Runs (#18 items 5, 6): --print-config, the resolved config saved and logged, console progress,
system metrics, the alias and model card of a training run's registered version."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from framecall.config import RESOLVED_NAME, build_config, from_dict, to_dict, to_yaml
from framecall.train.config import TrainJobConfig
from framecall.train.progress import ConsoleProgress, format_eta, progress_bars_on

ROOT = Path(__file__).resolve().parents[1]


def test_print_config_of_a_frame_job_is_the_resolved_config(tmp_path, capsys):
    from framecall.train.cli import train_main

    (tmp_path / "c.yaml").write_text("train:\n  lr: 0.002\n  batch_size: 3\n")
    argv = ["--config", str(tmp_path / "c.yaml"), "--max-steps", "7", "--output", str(tmp_path / "o"),
            "train.lr=0.01", "eval.decoders=[topn_nms]"]
    train_main("binary", [*argv, "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = build_config(TrainJobConfig, tmp_path / "c.yaml", {"train.max_steps": 7, "output": str(tmp_path / "o")},
                            ["train.objective=frame", "train.loss=binary", "train.lr=0.01", "eval.decoders=[topn_nms]"])
    assert printed == to_dict(expected)
    rebuilt = from_dict(TrainJobConfig, printed)  # the output is a valid --config of the same job
    assert rebuilt == expected and (rebuilt.train.lr, rebuilt.train.batch_size, rebuilt.head) == (0.01, 3, "binary")
    assert not (tmp_path / "o").exists()  # nothing ran


def test_print_config_of_predict_with_old_flags_file_and_overrides(tmp_path):
    (tmp_path / "p.yaml").write_text("checkpoint: runs/x/best\nbatch_size: 2\nformat: ctm\n")
    out = subprocess.run([sys.executable, str(ROOT / "jobs" / "predict.py"), "--config", str(tmp_path / "p.yaml"),
                          "--data", "d1,d2", "--output", str(tmp_path / "pred"), "--actors", "3", "batch_size=5",
                          "--print-config"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed == {"checkpoint": "runs/x/best", "input": "", "input_format": "auto", "data": "d1,d2",
                       "output": str(tmp_path / "pred"), "question": None, "transcript_column": None,
                       "format": "ctm", "num_events": "from-data", "bad_rows": "auto", "progress": "auto",
                       "batch_size": 5, "actors": 3, "registry_uri": None, "gpus_per_actor": 0.0,
                       "device": "auto", "dtype": "auto"}
    assert not (tmp_path / "pred").exists()
    bad = subprocess.run([sys.executable, str(ROOT / "jobs" / "predict.py"), "--data", "d", "--output", "o",
                          "--print-config"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "missing ['checkpoint']" in bad.stderr


def _job(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_polyaudio_and_make_polyaudio_take_typed_configs(tmp_path, capsys):
    _job("eval_polyaudio").main(["--model", "m", "--bench", "b", "--baseline", "q=/ckpt/q", "--judge", "rule",
                                 "limit=5", "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["baselines"], printed["judges"], printed["limit"]) == ({"q": "/ckpt/q"}, ["rule"], 5)
    with pytest.raises(SystemExit):
        _job("eval_polyaudio").main(["--model", "m", "--bench", "b", "--judge", "llm", "--print-config"])
    assert "judge_url" in capsys.readouterr().err
    _job("make_polyaudio").main(["--output", str(tmp_path / "p"), "--tasks", "counting", "max_clips=3",
                                 "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["tasks"], printed["max_clips"], printed["output"]) == (["counting"], 3, str(tmp_path / "p"))


def test_console_progress_lines():
    out = io.StringIO()
    progress = ConsoleProgress(max_steps=120, items_per_step=16, every_steps=50, every_s=1e9, out=out)
    printed = [step for step in range(1, 121) if progress.update(step, 0.5) is not None]
    assert printed == [1, 51, 101, 120]  # the first step, every 50 steps, the last
    line = out.getvalue().splitlines()[1]
    assert line.startswith("[framecall] step 51/120 loss 0.5000 | ") and "steps/s" in line and "items/s" in line
    assert "ETA " in line
    assert (format_eta(75), format_eta(3725), format_eta(float("inf"))) == ("1m15s", "1h02m", "?")
    assert progress_bars_on("on") and not progress_bars_on("off")
    assert progress_bars_on("auto") == sys.stdout.isatty()
    with pytest.raises(ValueError, match="data.progress_bars"):
        build_config(TrainJobConfig, overrides=["data.progress_bars=sometimes"])


def test_console_progress_is_written_once_under_ray_trains_print_patch(capsys, monkeypatch, caplog):
    """Ray Train workers replace print with one that tees to stdout *and* the root logger (shown on the
    driver twice); the progress line must bypass it."""
    import builtins
    import logging

    from ray.train.v2._internal.logging.patch_print import redirected_print

    monkeypatch.setattr(builtins, "print", redirected_print)
    caplog.set_level(logging.INFO)
    ConsoleProgress(max_steps=10, items_per_step=2, out=sys.stdout).update(1, 0.25)
    monkeypatch.undo()
    assert capsys.readouterr().out.count("[framecall] step 1/10") == 1
    assert not [r for r in caplog.records if "[framecall] step" in r.getMessage()]


def test_system_metrics_land_in_the_run(tmp_path, mlflow_uri):
    import time

    from mlflow.tracking import MlflowClient

    from framecall import tracking

    run_id = tracking.start_run(mlflow_uri, "system-metrics-test", tmp_path / "art", None, {}, {})
    client = MlflowClient(mlflow_uri)
    with tracking.system_metrics(mlflow_uri, run_id, interval_s=0.2):
        deadline = time.monotonic() + 60
        while not any(k.startswith("system/") for k in client.get_run(run_id).data.metrics):
            assert time.monotonic() < deadline, "no system/* metric logged within 60 s"
            time.sleep(0.2)
    keys = set(client.get_run(run_id).data.metrics)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= keys


@pytest.mark.slow
def test_training_run_saves_and_logs_its_config_and_registers_with_alias(ray_session, tiny_words_all, mlflow_uri,
                                                                          tmp_path):
    from mlflow.tracking import MlflowClient

    from framecall.train.runner import fit
    from tests_helpers import train_config

    cfg = train_config(tmp_path, tiny_words_all, mlflow_uri, steps=2,
                       **{"mlflow.registered_model_name": "runs-config-test", "mlflow.system_metrics_interval_s": 0.5})
    res = fit(cfg)
    saved = res.output / RESOLVED_NAME
    assert saved.read_text() == to_yaml(cfg) and from_dict(TrainJobConfig, yaml.safe_load(saved.read_text())) == cfg
    client = MlflowClient(mlflow_uri, registry_uri=mlflow_uri)
    logged = client.download_artifacts(res.run_id, RESOLVED_NAME, str(tmp_path))
    assert Path(logged).read_text() == saved.read_text()
    assert any(k.startswith("system/") for k in client.get_run(res.run_id).data.metrics)
    version = client.get_model_version_by_alias("runs-config-test", "latest-good")
    assert res.registered_model == f"models:/runs-config-test/{version.version}"
    assert "| head | poisson |" in version.description and "topn_nms acc@20ms" in version.description
