"""The phase timer and training_losses' arithmetic."""

import time

import torch

from framecall.config import build_config
from framecall.train.config import TrainJobConfig
from framecall.train.loop import training_losses
from framecall.train.phases import PhaseTimer


def test_phase_timer_means_and_data_fraction():
    timer = PhaseTimer()
    for _ in timer.timed_iter([1, 2]):  # two waits of ~0 s in "data"
        with timer.phase("forward_backward"):
            time.sleep(0.02)
    with timer.phase("eval"):
        time.sleep(0.04)
    s = timer.summary()
    assert set(s) == {"time/data", "time/forward_backward", "time/eval", "time/data_fraction"}
    assert 0.02 <= s["time/forward_backward"] < 0.2 and 0.04 <= s["time/eval"] < 0.3
    assert 0 <= s["time/data_fraction"] < 0.1
    assert timer.summary() == {}  # reset after each summary


class _Fixed(torch.nn.Module):
    """A model whose train-mode output is fixed: frame scores and a token loss of 2.0."""

    def forward(self, batch, mode="frame"):
        scores = torch.zeros(1, 3)
        mask = torch.ones(1, 3, dtype=torch.bool)
        if mode == "frame":
            return scores, mask
        return {"scores": scores, "mask": mask, "token_loss": torch.tensor(2.0)}


def _frame_loss(scores, counts, valid):
    """A stand-in frame loss: 0.5 per row, so P = 0.5."""
    return torch.full((scores.shape[0],), 0.5)


def test_training_losses_combine_by_objective():
    """frame: loss = P = 0.5; tokens: loss = T = 2.0; interpolated with lambda 0.1: T + 0.1 P = 2.05."""
    batch = {"subframe_mask": torch.ones(1, 3, dtype=torch.bool), "event_counts": torch.tensor([1])}
    for objective, want in (("frame", 0.5), ("tokens", 2.0), ("interpolated", 2.05)):
        cfg = build_config(TrainJobConfig, overrides=[f"train.objective={objective}", "train.interp_lambda=0.1"])
        parts = training_losses(_Fixed(), batch, cfg, _frame_loss)
        assert abs(float(parts["loss"]) - want) < 1e-6, (objective, parts)
