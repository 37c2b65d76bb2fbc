"""Where models run and how jobs reach Ray: one device/dtype choice, one Ray start.

Every model consumer (training workers, evaluation, the inference engine, batch prediction,
PolyAudio runners and judges, GRPO rollout actors) asks :func:`choose_device` instead of
deciding for itself, so that a GPU cluster and this CPU machine run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class DevicePlan:
    """A device, the dtype to load weights in, and the collective backend for several workers."""

    device: torch.device
    dtype: torch.dtype
    backend: str
    """nccl on CUDA, gloo on CPU."""


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on a CUDA device that supports it, else fp32 (fp32 on CPU: bf16 matmuls are slow there)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} unknown; valid: auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def choose_device(device: str | torch.device | None = "auto", dtype: str = "auto") -> DevicePlan:
    """``device``: auto (CUDA if present, else CPU), cpu, cuda, cuda:N; ``dtype``: auto | float32 | bfloat16 | float16."""
    if device in (None, "auto"):
        chosen = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    else:
        chosen = torch.device(device)
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but this machine has no CUDA device")
    return DevicePlan(chosen, resolve_dtype(dtype, chosen), "nccl" if chosen.type == "cuda" else "gloo")


def init_ray(address: str | None = None, min_cpus: float | None = None, **kwargs: Any) -> None:
    """Start (or join, with ``address``) Ray for a job, unless this process already did.

    ``min_cpus``: what the job's actors and workers hold at once. A local Ray started here gets at
    least that many logical CPUs (more than the cores: on 2 cores, 2 workers x 1 CPU plus Train's
    controller and Ray Data's tasks would otherwise wait forever for each other).
    The dashboard stays on: it serves the State API, which Ray Train's placement-group cleaner
    needs; without it the worker group of a run whose controller was killed (a trial Tune
    stopped) keeps its CPUs forever.
    """
    import math
    import os

    import ray

    if ray.is_initialized():
        return
    if address is None and min_cpus is not None and "num_cpus" not in kwargs:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, math.ceil(min_cpus))
    ray.init(address=address, include_dashboard=True, configure_logging=False, **kwargs)


def check_resources(where: str, num_cpus: float, num_gpus: float) -> None:
    """Ray's rules for one actor's ask, with the config field named: both >= 0, and a GPU share above 1
    whole (Ray packs fractions below 1 onto one GPU; 1.5 GPUs is not a placement Ray can make)."""
    if num_cpus < 0:
        raise ValueError(f"{where}: num_cpus must be >= 0, got {num_cpus}")
    if num_gpus < 0 or (num_gpus > 1 and num_gpus != int(num_gpus)):
        raise ValueError(f"{where}: num_gpus must be 0, a fraction below 1 or a whole number, got {num_gpus}")


def actor_options(where: str, num_cpus: float, num_gpus: float) -> dict[str, float]:
    """``ray_actor_options`` / ``.options()`` of a model-holding actor (Serve replica, Ray Data actor,
    rollout actor, judge); ``num_gpus`` only when asked, so CPU actors keep Ray's own default."""
    check_resources(where, num_cpus, num_gpus)
    return {"num_cpus": num_cpus, **({"num_gpus": num_gpus} if num_gpus else {})}


def placed_device(num_gpus: float, device: str = "auto") -> str:
    """The device a Ray-placed model consumer loads on. ``auto``: the accelerator only when its placement
    asked for GPUs (an actor that asked for none must not take a GPU Ray gave to another actor), and then
    CUDA when this process sees one (Ray sets CUDA_VISIBLE_DEVICES to the GPUs it assigned), else CPU:
    logical GPUs declared on a CPU machine (the tests) place the actor and run it on CPU."""
    if device != "auto":
        return device
    return "auto" if num_gpus > 0 else "cpu"


def detected_gpus(resources: dict[str, float]) -> bool:
    """Whether a cluster's resources include GPUs Ray detected on a node (it then adds an
    ``accelerator_type:<model>`` resource), not only logical GPUs declared by hand with
    ``ray.init(num_gpus=N)`` on a machine without one (as the test session does)."""
    return resources.get("GPU", 0) > 0 and any(k.startswith("accelerator_type:") for k in resources)
