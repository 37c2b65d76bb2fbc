"""A reusable timer for the named phases of a training step (verl's ``fit`` logs the same way).

    timer = PhaseTimer()
    with timer.phase("data"):
        batch = next(batches)
    ...
    logger.metrics(timer.summary(), step)   # time/data, time/forward_backward, ..., time/data_fraction

``summary()`` gives, for every phase seen since the last summary, the mean seconds per
occurrence as ``time/<phase>``, and ``time/data_fraction``: the share of all timed seconds spent
waiting for data (the known risk on small machines, where Ray Data and the workers share CPUs).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class PhaseTimer:
    def __init__(self, sync_cuda: bool = False, data_phase: str = "data") -> None:
        self.sync_cuda = sync_cuda
        """Wait for queued CUDA kernels at each phase boundary, so GPU time lands in its phase."""
        self.data_phase = data_phase
        """The phase that waits for input (``time/data_fraction``): ``data``, or GRPO's ``sample``."""
        self._total: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)

    def _sync(self) -> None:
        if self.sync_cuda:
            import torch

            torch.cuda.synchronize()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self._total[name] += seconds
        self._count[name] += 1

    def timed_iter(self, items: Iterable[T], name: str = "data") -> Iterator[T]:
        """Yield from ``items``, timing each wait as one ``name`` phase."""
        iterator = iter(items)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.add(name, time.perf_counter() - t0)
            yield item

    def summary(self, reset: bool = True) -> dict[str, float]:
        out = {f"time/{k}": self._total[k] / self._count[k] for k in sorted(self._total)}
        all_s = sum(self._total.values())
        if all_s > 0:
            out["time/data_fraction"] = self._total.get(self.data_phase, 0.0) / all_s
        if reset:
            self._total.clear()
            self._count.clear()
        return out
