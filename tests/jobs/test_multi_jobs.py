"""End to end: LoRA SFT, then GRPO with 2 rollout actors (merge once), resume; bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

from framecall.config import ConfigError, build_config
from framecall.models.checkpoint import CheckpointError, read_manifest
from framecall.train.grpo.config import GRPOJobConfig, SFTJobConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def poly_dirs(tmp_path_factory):
    from framecall.data.shards import ShardWriter
    from framecall.polyaudio.bench import PolyConfig, generate_items

    out = {}
    for split in ("train", "preference"):
        d = tmp_path_factory.mktemp(f"poly_{split}")
        with ShardWriter(d) as w:
            w.write_all(generate_items(PolyConfig(split=split, per_task=4, tasks=["counting", "comparison"])))
        out[split] = d
    return out


def _sft_cfg(tmp_path, data, mlflow_uri, **extra):
    return build_config(SFTJobConfig, overrides=[
        f"output={tmp_path / 'sft'}", f"data.data_dir={data}", "data.make_if_missing=false", "train.max_steps=2",
        "train.save_every=2", "train.batch_size=2", "ray.num_workers=1", f"mlflow.tracking_uri={mlflow_uri}",
        "lora.r=4", "lora.alpha=8", *[f"{k}={v}" for k, v in extra.items()]])


def _grpo_cfg(tmp_path, policy, data, mlflow_uri, **extra):
    return build_config(GRPOJobConfig, overrides=[
        f"output={tmp_path / 'grpo'}", f"policy={policy}", f"data.data_dir={data}", "data.make_if_missing=false",
        "grpo.max_steps=2", "grpo.save_every=1", "grpo.num_generations=2", "grpo.prompts_per_step=2",
        "grpo.max_new_tokens=6", "rollout.num_actors=2", "rollout.cpus_per_actor=0.25", "ray.num_workers=1",
        f"mlflow.tracking_uri={mlflow_uri}", "lora.r=4", "lora.alpha=8", *[f"{k}={v}" for k, v in extra.items()]])


@pytest.mark.slow
def test_sft_then_grpo_then_resume(tmp_path, poly_dirs, mlflow_uri, ray_session):
    from mlflow.tracking import MlflowClient

    from framecall.train.grpo.runner import fit_grpo, fit_sft

    sft = fit_sft(_sft_cfg(tmp_path, poly_dirs["train"], mlflow_uri))
    m = read_manifest(sft.best_checkpoint)
    assert m.stage == "sft" and m.adapter == "adapter" and m.global_step == 2 and m.parent is None
    assert (sft.best_checkpoint / "adapter" / "adapter_config.json").is_file()
    assert sft.registered_model.startswith("models:/framecall-sft/")
    client = MlflowClient(mlflow_uri)
    assert {"train/loss", "time/forward_backward", "time/data"} <= set(client.get_run(sft.run_id).data.metrics)

    # two learner workers: rank 0 syncs the actors, the other rank generates at the version it adopts;
    # checkpoints on a pyarrow filesystem that is not the local one (as s3:// would be), so --resume
    # below hands the learner a checkpoint on that storage, not the driver's local copy
    import pyarrow.fs as pafs

    (tmp_path / "shared").mkdir()
    shared = pafs.SubTreeFileSystem(str(tmp_path / "shared"), pafs.LocalFileSystem())
    grpo = fit_grpo(_grpo_cfg(tmp_path, sft.best_checkpoint, poly_dirs["preference"], mlflow_uri,
                              **{"ray.num_workers": 2, "ray.cpus_per_worker": 0.5, "ray.storage_path": "grpo_ckpt"}),
                    storage_filesystem=shared)
    g = read_manifest(grpo.best_checkpoint)
    assert g.stage == "grpo" and g.policy_version == 2 and g.parent == str(sft.best_checkpoint)
    assert Path(g.backbone) == tmp_path / "grpo" / "merged_base"
    metrics = client.get_run(grpo.run_id).data.metrics
    phases = {f"time/{p}" for p in ("sample", "sync", "gen", "reward", "old_logprob", "ref", "adv", "update")}
    assert phases | {"reward/mean", "reward/format", "kl/mean", "clip_fraction", "weights/version",
                     "rollout/restarts", "rollout/logprob_abs_diff", "reward/zero_std_group_fraction"} <= set(metrics)
    assert metrics["weights/version"] == 2 and metrics["rollout/logprob_abs_diff"] < 1e-3
    assert grpo.registered_model.startswith("models:/framecall-grpo/")

    assert any((tmp_path / "shared" / "grpo_ckpt").rglob("checkpoint_*"))

    again = fit_grpo(_grpo_cfg(tmp_path, sft.best_checkpoint, poly_dirs["preference"], mlflow_uri,
                               resume="true", **{"grpo.max_steps": 3, "ray.storage_path": "grpo_ckpt"}),
                     storage_filesystem=shared)
    r = read_manifest(again.best_checkpoint)
    assert again.run_id == grpo.run_id and r.policy_version == 3 and r.global_step == 3
    # restored at step 2 from the shared storage: only step 3 was trained (and logged) again
    assert sorted(m.step for m in client.get_metric_history(grpo.run_id, "kl/mean")) == [1, 2, 3]


def test_bad_input_fails_before_any_actor(tmp_path, poly_dirs, mlflow_uri):
    from framecall.train.grpo.data import DataSplitError
    from framecall.train.grpo.runner import fit_grpo

    with pytest.raises(ConfigError, match="num_generations must be >= 2"):
        _grpo_cfg(tmp_path, "tiny-omni", poly_dirs["preference"], mlflow_uri, **{"grpo.num_generations": 1})
    with pytest.raises(ConfigError, match="num_actors must be >= 1"):
        _grpo_cfg(tmp_path, "tiny-omni", poly_dirs["preference"], mlflow_uri, **{"rollout.num_actors": 0})
    for key, value, valid in (("grpo.advantage", "ppo", "grpo"), ("grpo.kl_estimator", "k9", "k3"),
                              ("grpo.rewards", "{lenght: 1}", "accuracy")):
        with pytest.raises(ValueError, match=f"unknown .*valid.*{valid}"):
            fit_grpo(_grpo_cfg(tmp_path, "tiny-omni", poly_dirs["preference"], mlflow_uri, **{key: value}))
    with pytest.raises(DataSplitError, match="no rows in split 'preference'; splits present: \\['train'\\]"):
        fit_grpo(_grpo_cfg(tmp_path, "tiny-omni", poly_dirs["train"], mlflow_uri))
    no_adapter = tmp_path / "frame_ckpt"
    from tests_helpers import make_checkpoint

    make_checkpoint(no_adapter, ["words_all"])
    with pytest.raises(CheckpointError, match="is a 'frame' checkpoint, expected 'sft' or 'grpo'"):
        fit_grpo(_grpo_cfg(tmp_path, no_adapter, poly_dirs["preference"], mlflow_uri))
    other = tmp_path / "sft_of_another_backbone"
    other.mkdir()
    from framecall.models.checkpoint import write_manifest
    from tests_helpers import tiny_manifest

    write_manifest(other, tiny_manifest(stage="sft", head="tokens", model_type="qwen2_audio", adapter="adapter",
                                        finetune="lora", lora={"r": 4, "alpha": 8}))
    with pytest.raises(CheckpointError, match="has a qwen2_audio backbone, expected qwen2_5_omni"):
        fit_grpo(_grpo_cfg(tmp_path, other, poly_dirs["preference"], mlflow_uri))
    with pytest.raises(CheckpointError, match="without an adapter"):
        write_manifest(other, tiny_manifest(stage="sft", head="tokens", adapter="adapter", finetune="lora",
                                            lora={"r": 4, "alpha": 8}))
        fit_grpo(_grpo_cfg(tmp_path, other, poly_dirs["preference"], mlflow_uri))
    bad = subprocess.run([sys.executable, "jobs/train_grpo.py", "--policy", "tiny-omni", "grpo.num_generations=1"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "num_generations must be >= 2" in bad.stderr
    assert not (tmp_path / "grpo" / "ray").exists()  # nothing started


def test_shipped_gpu_configs_parse():
    grpo = build_config(GRPOJobConfig, ROOT / "jobs/configs/grpo_7b.yaml")
    sft = build_config(SFTJobConfig, ROOT / "jobs/configs/sft_7b.yaml")
    assert grpo.grpo.num_generations == 8 and grpo.grpo.lr == 1e-6 and grpo.rollout.gpus_per_actor == 1
    assert sft.lora.dtype == "bfloat16" and sft.ray.use_gpu == "true"
