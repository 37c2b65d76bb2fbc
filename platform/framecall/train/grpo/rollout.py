"""Rollout engines behind one small interface, and the Ray actors that host them.

The learner never talks to a model in another process directly: it asks a
:class:`RolloutActor` for G completions per prompt *at a policy version*. Weight sync is
``(version, digest, adapter state)`` through the object store; the actor loads the state,
recomputes the digest of what it now holds and reports ``(version, digest)`` back. An actor
refuses a generation request for any version other than the one it holds, and a restarted
actor holds none until it is synced, so stale or initial weights can never serve a step.

:class:`HFRolloutEngine` generates with transformers' ``generate``; an engine around vLLM or
SGLang only has to implement :class:`RolloutEngine` to replace it for 7B runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from framecall.train.grpo.policy import Completions, SamplingConfig, WeightSyncError


class StaleVersionError(WeightSyncError):
    """A generation request for a policy version the actor does not hold."""


@dataclass
class PolicySpec:
    """What a rollout engine (or learner) builds its policy from."""

    backbone: str
    """A tiny preset, a local model path, or the merged-base directory the driver wrote."""
    lora: dict[str, Any]
    """LoraSpec fields of the fresh adapter being trained."""
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0


class RolloutEngine(Protocol):
    def load_adapter(self, state: dict[str, torch.Tensor], version: int) -> str:
        """Load an adapter snapshot; -> the digest of what the engine now holds."""

    def generate(self, items: list[dict[str, Any]], num_samples: int, sampling: SamplingConfig,
                 seed: int) -> Completions:
        """``num_samples`` completions per item (item-major), with their log-probs."""


class HFRolloutEngine:
    """transformers ``generate`` on the device the runtime helper picks."""

    def __init__(self, spec: PolicySpec) -> None:
        from framecall.models.backbone import load_backbone
        from framecall.models.checkpoint import LoraSpec
        from framecall.runtime import choose_device
        from framecall.train.grpo.policy import attach_lora

        plan = choose_device(spec.device, spec.dtype)
        self.backbone = load_backbone(spec.backbone, dtype=plan.dtype)
        attach_lora(self.backbone, LoraSpec(**spec.lora), seed=spec.seed)
        self.backbone.model.to(plan.device).eval()

    def load_adapter(self, state: dict[str, torch.Tensor], version: int) -> str:
        from framecall.train.grpo.policy import load_adapter_state

        return load_adapter_state(self.backbone, state, version)

    def generate(self, items: list[dict[str, Any]], num_samples: int, sampling: SamplingConfig,
                 seed: int) -> Completions:
        from framecall.train.grpo.data import prompt_inputs
        from framecall.train.grpo.policy import sample

        return sample(self.backbone, prompt_inputs(self.backbone, items, repeat=num_samples), sampling, seed)


class RolloutActor:
    """Hosts one engine; run as a Ray actor (``ray.remote(RolloutActor).options(max_restarts=...)``)."""

    def __init__(self, spec: PolicySpec) -> None:
        self.engine: RolloutEngine = HFRolloutEngine(spec)
        self.version: int | None = None  # a (re)started actor holds no version until synced
        self.digest: str | None = None
        self.pid = os.getpid()

    def sync(self, version: int, digest: str, state: dict[str, torch.Tensor]) -> tuple[int, str]:
        """Load ``state`` as ``version``; refuses a snapshot whose content does not hash to ``digest``."""
        from framecall.train.grpo.policy import state_digest

        sent = state_digest(state)
        if sent != digest:
            raise WeightSyncError(f"adapter snapshot of version {version} is corrupted: its digest {sent[:12]}... "
                                  f"differs from the learner's {digest[:12]}...")
        held = self.engine.load_adapter(state, version)
        if held != digest:
            raise WeightSyncError(f"after loading version {version} the actor holds digest {held[:12]}..., "
                                  f"not {digest[:12]}...")
        self.version, self.digest = version, held
        return version, held

    def held(self) -> tuple[int | None, str | None, int]:
        """(version, digest, pid) of what this actor holds now."""
        return self.version, self.digest, self.pid

    def generate(self, expected_version: int, items: list[dict[str, Any]], num_samples: int,
                 sampling: SamplingConfig, seed: int) -> tuple[int, Completions]:
        if self.version != expected_version:
            raise StaleVersionError(f"rollout actor (pid {self.pid}) holds policy version {self.version}, "
                                    f"the request expects {expected_version}")
        return self.version, self.engine.generate(items, num_samples, sampling, seed)
