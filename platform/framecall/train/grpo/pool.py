"""The learner's view of its rollout actors: versioned weight sync, generation, restarts.

Every sync carries ``(version, digest)``; each actor answers with what it now holds and a
mismatch raises. Generation asks for an explicit version; an actor that died (and was
restarted by Ray, holding no version) is re-synced and the request retried once; a second
failure is a clear error, never a step on stale weights.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from framecall.train.grpo.policy import Completions, SamplingConfig, WeightSyncError, state_digest
from framecall.train.grpo.rollout import StaleVersionError


class RolloutPool:
    def __init__(self, actors: list[Any], timeout_s: float = 300.0) -> None:
        if not actors:
            raise ValueError("GRPO needs at least one rollout actor")
        self.actors = list(actors)
        self.timeout_s = timeout_s
        self.version: int | None = None
        self.digest: str | None = None
        self.restarts = 0
        self._state_ref = None
        self._pids: dict[int, int] = {}

    def _get(self, refs, what: str):
        import ray
        from ray.exceptions import GetTimeoutError

        try:
            return ray.get(refs, timeout=self.timeout_s)
        except GetTimeoutError:
            raise WeightSyncError(f"{what} did not finish within {self.timeout_s:.0f} s") from None

    def sync(self, version: int, state: dict[str, torch.Tensor], only: list[int] | None = None) -> float:
        """Publish ``state`` as ``version`` to every actor (or ``only`` these); -> seconds taken.
        Actors Ray restarted since the last sync (another pid) are counted in ``restarts``."""
        import ray

        t0 = time.perf_counter()
        self._count_restarts(self._wait_alive())
        if version != self.version:
            self.version, self.digest = version, state_digest(state)
            self._state_ref = ray.put(state)
        idx = list(range(len(self.actors))) if only is None else only
        held = self._push(idx, version)
        for i, (v, digest) in zip(idx, held):
            if (v, digest) != (version, self.digest):
                raise WeightSyncError(f"rollout actor {i} holds ({v}, {digest[:12]}...) after the sync of "
                                      f"({version}, {self.digest[:12]}...)")
        return time.perf_counter() - t0

    def _push(self, idx: list[int], version: int) -> list[tuple[int, str]]:
        """Send the snapshot to actors ``idx``; an actor that died meanwhile is waited for (Ray
        restarts it), counted, and sent the snapshot once more."""
        from ray.exceptions import RayActorError

        def send() -> list[tuple[int, str]]:
            refs = [self.actors[i].sync.remote(version, self.digest, self._state_ref) for i in idx]
            return self._get(refs, f"weight sync of version {version}")

        try:
            return send()
        except RayActorError:
            self._count_restarts(self._wait_alive())
            return send()

    def _count_restarts(self, held: list[tuple[int | None, str | None, int]]) -> None:
        for i, (_, _, pid) in enumerate(held):
            if i in self._pids and self._pids[i] != pid:
                self.restarts += 1
            self._pids[i] = pid

    def held(self) -> list[tuple[int | None, str | None, int]]:
        """(version, digest, pid) of every actor."""
        return self._get([a.held.remote() for a in self.actors], "actor state")

    def adopt(self, version: int, digest: str) -> None:
        """Another rank synced the actors to ``(version, digest)``: generate at it (every learner
        rank holds the same weights, so a re-sync from this rank sends the same digest)."""
        if version != self.version:
            self.version, self.digest, self._state_ref = version, digest, None

    def resync_restarted(self, state_fn=None) -> int:
        """Re-sync actors that lost their version (restarted by Ray); -> how many. ``state_fn``
        gives this rank's adapter state when it has not published one itself."""
        import ray

        held = self._wait_alive()
        stale = [i for i, (v, d, _) in enumerate(held) if (v, d) != (self.version, self.digest)]
        if stale and self.version is not None:
            if self._state_ref is None:
                if state_fn is None:
                    raise WeightSyncError(f"rollout actors {stale} lost version {self.version} and this rank "
                                          "has no adapter state to re-sync them")
                state = state_fn()
                if state_digest(state) != self.digest:
                    raise WeightSyncError(f"this rank's adapter does not hash to version {self.version}'s digest")
                self._state_ref = ray.put(state)
            self.sync(self.version, {}, only=stale)
        return len(stale)

    def _wait_alive(self) -> list[tuple[int | None, str | None, int]]:
        from ray.exceptions import RayActorError

        deadline = time.time() + self.timeout_s
        while True:
            try:
                return self.held()
            except RayActorError:
                if time.time() > deadline:
                    raise WeightSyncError(f"a rollout actor did not come back within {self.timeout_s:.0f} s") from None
                time.sleep(0.5)

    def generate(self, items: list[dict[str, Any]], num_samples: int, sampling: SamplingConfig,
                 seed: int, state_fn=None) -> tuple[Completions, list[int]]:
        """``num_samples`` completions per item, the items split over the actors; -> (completions,
        the version each completion was generated at)."""
        from ray.exceptions import RayActorError

        try:
            return self._generate(items, num_samples, sampling, seed)
        except (RayActorError, StaleVersionError) as e:
            print(f"[framecall] rollout failed ({type(e).__name__}: {str(e)[:200]}); re-syncing and retrying once")
            self.resync_restarted(state_fn)
            return self._generate(items, num_samples, sampling, seed)

    def _generate(self, items, num_samples, sampling, seed) -> tuple[Completions, list[int]]:
        parts = [items[i::len(self.actors)] for i in range(len(self.actors))]
        calls = [(k, a.generate.remote(self.version, part, num_samples, sampling, seed + 7919 * k))
                 for k, (a, part) in enumerate(zip(self.actors, parts)) if part]
        results = self._get([ref for _, ref in calls], f"generation at version {self.version}")
        order = [i for k, _ in calls for i in range(len(items))[k::len(self.actors)]]
        merged = _merge([c for _, c in results], num_samples, order)
        versions = [v for (v, c) in results for _ in range(c.ids.shape[0])]
        return merged, [versions[j] for j in _row_order(order, num_samples)]


def _row_order(order: list[int], g: int) -> list[int]:
    """Rows of the concatenated actor outputs, re-ordered item-major in the items' original order."""
    pos = {item: n for n, item in enumerate(order)}
    return [pos[item] * g + s for item in sorted(pos) for s in range(g)]


def _merge(parts: list[Completions], g: int, order: list[int]) -> Completions:
    width = max(c.ids.shape[1] for c in parts)

    def pad(t: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    ids = torch.cat([pad(c.ids, 0) for c in parts])
    mask = torch.cat([pad(c.mask, False) for c in parts])
    logprobs = torch.cat([pad(c.logprobs, 0.0) for c in parts])
    texts = [t for c in parts for t in c.texts]
    rows = _row_order(order, g)
    return Completions(ids[rows], mask[rows], logprobs[rows], [texts[r] for r in rows])
