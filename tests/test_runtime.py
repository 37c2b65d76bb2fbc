"""Placement and device choice: what each model consumer asks Ray for, and where it loads the model.

No GPU is here: the session's Ray declares one *logical* GPU (tests/conftest.py), so the scheduling side is
real (an actor asking for a GPU is placed only where one is declared) and the model then runs on CPU.
"""

from __future__ import annotations

import pytest
import torch

from framecall.runtime import actor_options, check_resources, choose_device, detected_gpus, placed_device
from tests_helpers import make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("runtime") / "ckpt", ["words", "words_all"])


def test_actor_options_ask_for_gpus_only_when_configured_and_allow_fractions():
    assert actor_options("x", 1, 0) == {"num_cpus": 1}
    assert actor_options("x", 0.5, 0.25) == {"num_cpus": 0.5, "num_gpus": 0.25}
    assert actor_options("x", 2, 4) == {"num_cpus": 2, "num_gpus": 4}
    with pytest.raises(ValueError, match=r"model_num_gpus: num_gpus must be 0, a fraction below 1 or a whole"):
        check_resources("model_num_gpus", 1, 1.5)
    with pytest.raises(ValueError, match="cpus_per_actor: num_cpus must be >= 0"):
        check_resources("cpus_per_actor", -1, 0)


def test_placed_device_takes_a_gpu_only_when_the_placement_asked_for_one():
    assert placed_device(0) == "cpu"  # an actor without a GPU share never grabs a visible GPU
    assert placed_device(0.5) == "auto"  # the GPU Ray assigned, when this process sees CUDA
    assert placed_device(0, "cuda:1") == "cuda:1"
    # here (no CUDA) auto resolves to CPU + fp32; asking for CUDA is a clear error
    plan = choose_device(placed_device(1))
    assert (plan.device.type, plan.dtype, plan.backend) == ("cpu", torch.float32, "gloo")
    with pytest.raises(ValueError, match="'cuda' asked for, but this machine has no CUDA device"):
        choose_device("cuda")


def test_logical_gpus_are_not_detected_gpus_so_training_auto_stays_on_cpu(ray_session):
    from framecall.train.config import RaySection
    from framecall.train.runner import scaling_config, use_gpu

    resources = ray_session.cluster_resources()
    assert resources["GPU"] == 1 and not detected_gpus(resources)
    assert detected_gpus({"GPU": 4.0, "accelerator_type:H100": 1.0})
    assert use_gpu("auto") is False
    cpu = scaling_config(RaySection(num_workers=2, cpus_per_worker=1.0))
    assert not cpu.use_gpu and cpu.resources_per_worker == {"CPU": 1.0}
    gpu = scaling_config(RaySection(num_workers=2, use_gpu="true", gpus_per_worker=0.5))
    assert gpu.use_gpu and gpu.resources_per_worker == {"CPU": 1.0, "GPU": 0.5}
    with pytest.raises(ValueError, match=r"ray \(cpus_per_worker, gpus_per_worker\): num_gpus"):
        RaySection(gpus_per_worker=2.5)


def test_an_actor_asking_for_a_gpu_is_placed_and_one_asking_for_two_stays_pending(ray_session):
    ray = ray_session

    @ray.remote
    class Probe:
        def gpus(self):
            return ray.get_gpu_ids()

    one = Probe.options(**actor_options("probe", 0.1, 1)).remote()
    assert ray.get(one.gpus.remote(), timeout=60) == [0]  # placed on the declared GPU
    ray.kill(one)
    two = Probe.options(**actor_options("probe", 0.1, 2)).remote()
    ready, _ = ray.wait([two.gpus.remote()], timeout=5)
    assert ready == []  # the cluster declares one GPU: never placed
    ray.kill(two)


def test_serve_engine_loads_on_the_configured_device_and_dtype(ckpt):
    from framecall.serving import ServeSettings, engine_for

    settings = ServeSettings(checkpoint=str(ckpt), allowed_roots=[str(ckpt.parent)], device="cpu",
                             dtype="bfloat16")
    param = next(engine_for(settings).model.parameters())
    assert (param.device.type, param.dtype) == ("cpu", torch.bfloat16)
    with pytest.raises(ValueError, match="model_num_cpus, model_num_gpus: num_gpus"):
        ServeSettings(checkpoint=str(ckpt), model_num_gpus=1.5)
    with pytest.raises(ValueError, match="dtype 'fp8' unknown"):
        ServeSettings(checkpoint=str(ckpt), dtype="fp8")


def test_evaluation_loads_through_the_device_helper(ckpt, tiny_words_all):
    from framecall.train.evaluate import evaluate_checkpoint

    with pytest.raises(ValueError, match="'cuda' asked for, but this machine has no CUDA device"):
        evaluate_checkpoint(ckpt, tiny_words_all, device="cuda")

    # the batch's waveforms featurized at once on the model's device give the per-row features' answers
    batched = evaluate_checkpoint(ckpt, tiny_words_all, max_items=4, decoders=["all"], featurize="worker")[2]
    per_row = evaluate_checkpoint(ckpt, tiny_words_all, max_items=4, decoders=["all"], featurize="pipeline")[2]
    assert len(batched) == len(per_row) >= 4 and [r["id"] for r in batched] == [r["id"] for r in per_row]
    for a, b in zip(batched, per_row):
        assert a["preds"].keys() == b["preds"].keys()
        for name, times in a["preds"].items():  # continuous decoders move by float noise (~1e-8 s) at most
            assert times == pytest.approx(b["preds"][name], abs=1e-5), (a["id"], name)
    with pytest.raises(ValueError, match="featurize must be 'pipeline' or 'worker'"):  # the choice reaches the pipeline
        evaluate_checkpoint(ckpt, tiny_words_all, max_items=4, featurize="gpu")
        assert a["expected_count"] == pytest.approx(b["expected_count"], rel=1e-4)


def test_judge_server_arguments_are_checked_by_name():
    from framecall.polyaudio.judge_server import build_judge_app

    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['gpus'\]"):
        build_judge_app({"model": "tiny-judge", "gpus": "1"})
    with pytest.raises(ValueError, match="judge server \\(num_cpus, num_gpus\\): num_gpus"):
        build_judge_app({"model": "tiny-judge", "num_gpus": "1.5"})
    with pytest.raises(ValueError, match="num_cpus / num_gpus must be numbers"):
        build_judge_app({"model": "tiny-judge", "num_gpus": "half"})


def _alive_replicas(deployment: str, app: str) -> list:
    """The app's live replica actors, asked of this session's Ray by its address (other Ray instances on
    the machine would be found by auto-detection)."""
    import ray
    from ray.util.state import list_actors

    actors = list_actors(address=ray.get_runtime_context().gcs_address, filters=[("state", "=", "ALIVE")],
                         detail=True)
    return [a for a in actors if a.class_name == f"ServeReplica:{app}:{deployment}"]


@pytest.mark.slow
def test_judge_replica_with_a_gpu_share_is_placed_and_answers(serve_url):
    import requests
    from ray import serve

    from framecall.polyaudio.judge_server import build_judge_app

    serve.run(build_judge_app({"model": "tiny-judge", "num_gpus": "0.5", "num_cpus": "0.25", "dtype": "bfloat16"}),
              name="judge-gpu", route_prefix="/judge-gpu")
    try:
        body = {"messages": [{"role": "user", "content": "yes or no?"}], "max_tokens": 2}
        r = requests.post(f"{serve_url}/judge-gpu/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text[:300]
        assert [a.required_resources.get("GPU") for a in _alive_replicas("ChatJudgeServer", "judge-gpu")] == [0.5]
    finally:
        serve.delete("judge-gpu")


@pytest.mark.slow
def test_serve_replica_with_a_gpu_share_is_placed_on_the_logical_gpu_and_answers(serve_url, ckpt):
    import requests
    from ray import serve

    from framecall.serve_app import build_app

    args = {"checkpoint": str(ckpt), "allowed_roots": [str(ckpt.parent)], "model_num_gpus": 0.5,
            "model_num_cpus": 0.25}
    serve.run(build_app(args), name="gpu-share", route_prefix="/gpu-share")
    try:
        health = requests.get(f"{serve_url}/gpu-share/healthz", timeout=60)
        assert health.status_code == 200 and health.json()["model"]["head"] == "poisson"
        replicas = _alive_replicas("FrameModelServer", "gpu-share")
        assert [r.required_resources.get("GPU") for r in replicas] == [0.5]
    finally:
        serve.delete("gpu-share")


@pytest.mark.slow
def test_batch_prediction_actor_asking_for_a_gpu_is_placed_and_predicts(ray_session, ckpt, tiny_words_all,
                                                                       tmp_path):
    from framecall.batch_predict import PredictConfig, predict_to_dir

    cfg = PredictConfig(checkpoint=str(ckpt), output=str(tmp_path / "out"), gpus_per_actor=1, dtype="float32",
                        progress_bars="off")
    summary = predict_to_dir(str(tiny_words_all), cfg)
    assert summary["rows"] == 24 and summary["skipped"] == 0
    with pytest.raises(ValueError, match="cpus_per_actor, gpus_per_actor: num_gpus"):
        PredictConfig(checkpoint=str(ckpt), output=str(tmp_path), gpus_per_actor=3.5)
