"""Helpers shared by test modules (conftest puts this directory on sys.path)."""

from framecall.config import build_config
from framecall.train.config import TrainJobConfig


def train_config(tmp_path, data, mlflow_uri, loss="poisson", steps=4, **extra):
    overrides = [f"train.loss={loss}", f"train.max_steps={steps}", "train.eval_every=2", "train.batch_size=2",
                 "train.warmup_steps=1", "ray.num_workers=2", "ray.cpus_per_worker=1", "eval.figures=1",
                 f"mlflow.tracking_uri={mlflow_uri}", f"mlflow.run_name={tmp_path.name}", "data.make_if_missing=false",
                 *[f"{k}={v}" for k, v in extra.items()]]
    return build_config(TrainJobConfig, flags={"data.data_dir": str(data), "output": str(tmp_path / "out")},
                        overrides=overrides)
