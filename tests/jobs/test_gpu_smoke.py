"""jobs/gpu_smoke.py's path on CPU with the tiny model: one step, one evaluation, one served request."""

from pathlib import Path

import pytest

from tests_helpers import train_config

pytestmark = pytest.mark.slow


def test_smoke_trains_one_step_evaluates_and_serves_on_cpu(serve_url, tiny_words_all, mlflow_uri, tmp_path):
    from framecall.bench.smoke import run_smoke

    report = run_smoke(train_config(tmp_path, tiny_words_all, mlflow_uri), serve_url=serve_url)
    assert (report.device, report.dtype, report.peak_gpu_memory_gib) == ("cpu", "float32", None)
    assert report.eval_items >= 4 and report.train_step_s > 0 and report.eval_s > 0
    assert report.served_times_s and all(0 <= t <= 3.0 for t in report.served_times_s)
    assert (Path(report.checkpoint) / "manifest.json").is_file()  # the step's checkpoint, readable by Serve
    lines = report.lines()
    assert lines[0] == "device cpu, dtype float32" and "served request" in lines[3]
