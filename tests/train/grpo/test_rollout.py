"""Rollout actors on Ray: versioned sync, refusals, restarts."""

import pytest
import torch

from framecall.models.checkpoint import LoraSpec
from framecall.polyaudio.bench import PolyConfig, generate_items
from framecall.train.grpo.data import row_to_item
from framecall.train.grpo.policy import SamplingConfig, WeightSyncError, adapter_state, attach_lora, state_digest
from framecall.train.grpo.pool import RolloutPool
from framecall.train.grpo.rollout import PolicySpec, RolloutActor, StaleVersionError

LORA = LoraSpec(r=4, alpha=8)


@pytest.fixture(scope="module")
def learner():
    from framecall.models.backbone import load_backbone

    bb = load_backbone("tiny-omni")
    attach_lora(bb, LORA, seed=3)
    return bb


@pytest.fixture(scope="module")
def actors(ray_session):
    import ray

    from framecall.config import to_dict

    remote = ray.remote(RolloutActor).options(num_cpus=0.25, max_restarts=1, max_task_retries=0)
    handles = [remote.remote(PolicySpec("tiny-omni", to_dict(LORA))) for _ in range(2)]
    yield handles
    for h in handles:
        ray.kill(h, no_restart=True)


@pytest.fixture(scope="module")
def items():
    rows = generate_items(PolyConfig(split="preference", per_task=2, tasks=["counting"]))
    return [row_to_item(r) for r in rows]


def _bump(bb):
    with torch.no_grad():
        for name, p in bb.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.01)


def test_versions_digests_refusals_and_a_restarted_actor(actors, learner, items):
    import ray

    pool = RolloutPool(actors, timeout_s=120)
    sampling = SamplingConfig(max_new_tokens=6)
    for version in range(2):  # every actor holds the learner's (version, digest) after each sync
        pool.sync(version, adapter_state(learner))
        digest = state_digest(adapter_state(learner))
        assert [(v, d) for v, d, _ in pool.held()] == [(version, digest)] * 2
        done, versions = pool.generate(items[:2], 2, sampling, seed=version)
        assert versions == [version] * 4 and len(done.texts) == 4
        _bump(learner)
    with pytest.raises(StaleVersionError, match="holds policy version 1, the request expects 2"):
        ray.get(actors[0].generate.remote(2, items[:1], 2, sampling, 0))
    state = adapter_state(learner)
    tampered = {k: v + 1 if i == 0 else v for i, (k, v) in enumerate(state.items())}
    with pytest.raises(WeightSyncError, match="snapshot of version 2 is corrupted"):
        ray.get(actors[0].sync.remote(2, state_digest(state), tampered))
    wrong = {k: v[..., :2] if "lora_A" in k else v for k, v in state.items()}
    with pytest.raises(WeightSyncError, match="version 2 does not fit this policy"):
        ray.get(actors[0].sync.remote(2, state_digest(wrong), wrong))

    ray.kill(actors[1], no_restart=False)  # between steps: Ray restarts it with no version
    pool.sync(2, state)
    done, versions = pool.generate(items, 2, sampling, seed=5)
    assert pool.restarts == 1 and versions == [2] * len(done.texts)
    assert [v for v, _, _ in pool.held()] == [2, 2]
