"""RunLogger: never raises, counts what it could not log, never logs a step of a key twice."""

import pytest

from framecall.tracking import RunLogger, is_transient, start_run


@pytest.fixture()
def run(mlflow_uri, tmp_path):
    return start_run(mlflow_uri, "logger-faults", tmp_path / "art", "r", params={}, tags={})


def _steps(uri, run_id, key):
    from mlflow.tracking import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key)]


@pytest.mark.parametrize("background", [False, True])
def test_steps_only_move_forward_per_key_and_floor(mlflow_uri, run, background):
    log = RunLogger(mlflow_uri, run, background=background)
    log.metrics({"a": 1.0, "b": 1.0}, 1)
    log.metrics({"a": 9.0}, 1)  # a repeat of step 1 of "a": dropped
    log.metrics({"a": 2.0}, 2)
    log.flush()
    assert log.last_logged_step() == 2
    log.floor = 5  # after a restore whose run already logged up to step 5
    log.metrics({"a": 4.0, "c": 4.0}, 4)
    log.metrics({"a": 6.0}, 6)
    log.flush()
    assert _steps(mlflow_uri, run, "a") == [(1, 1.0), (2, 2.0), (6, 6.0)] and _steps(mlflow_uri, run, "c") == []
    assert log.lost == 0


def test_a_store_error_is_counted_not_raised(mlflow_uri):
    log = RunLogger(mlflow_uri, "0" * 32, retries=2, backoff_s=0.01, background=True)  # no such run
    log.metrics({"a": 1.0, "b": 2.0}, 1)
    log.set_tag("k", "v")
    log.finish()
    assert log.lost == 4 and log.retried == 0  # not transient: not retried, every value counted


def test_transient_errors():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    assert is_transient(MlflowException("(sqlite3.OperationalError) database is locked"))
    assert is_transient(MlflowException("x", error_code=TEMPORARILY_UNAVAILABLE))
    assert is_transient(ConnectionError("reset"))
    assert not is_transient(MlflowException("no run", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not is_transient(ValueError("bad value"))
