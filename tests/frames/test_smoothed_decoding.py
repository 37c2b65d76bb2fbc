"""The smoothed decoders (the authors' reported decoding) against hand-built curves and an
independent numpy transcription of their algorithm (inkitori/taudio utils/poisson.py)."""

import numpy as np
import pytest
import torch

from framecall.frames.decoding import (
    box_smooth, box_width, decode, decoder_spec, iterative_posterior_modes, poisson_posterior_modes,
    smoothed_log_intensity, smoothed_posterior_modes, smoothed_topk,
)


def their_posterior_mode(log_hazards: np.ndarray, n: int) -> np.ndarray:
    """Their vectorised mode for one item: u* = (k-1)/(n-1) clipped to each frame's [F_left, F_right]
    of the normalised cumulative hazard, scored by log lam + (k-1) log u + (n-k) log(1-u)."""
    hazards = np.exp(log_hazards)
    f_right = np.cumsum(hazards) / hazards.sum()
    f_left = np.concatenate([[0.0], f_right[:-1]])
    k = np.arange(1, n + 1)[None, :]
    u = np.clip((k - 1) / max(n - 1, 1e-9), f_left[:, None], f_right[:, None])  # [T, n]
    u_safe = np.clip(u, 1e-12, 1 - 1e-12)
    scores = log_hazards[:, None] + (k - 1) * np.log(u_safe) + (n - k) * np.log(1 - u_safe)
    best = scores.argmax(axis=0)
    frac = (u[best, np.arange(n)] - f_left[best]) / np.maximum(f_right[best] - f_left[best], 1e-9)
    return best + frac


def their_smoothed_mode(log_hazards: np.ndarray, n: int, box: int) -> np.ndarray:
    smoothed = np.convolve(np.exp(log_hazards), np.ones(box), mode="same")
    return their_posterior_mode(np.log(smoothed + 1e-12), n)


def test_box_width_is_the_authors_rule():
    assert box_width(0.02, 0.01) == 5 and box_width(0.04, 0.01) == 9  # 2 * tol / sub-frame + 1, odd
    assert box_width(0.02, 0.02) == 3 and box_width(0.004, 0.01) == 1 and box_width(0.03, 0.01) == 7
    with pytest.raises(ValueError, match="unit_s > 0"):
        box_width(0.02, 0.0)


def test_box_smooth_matches_numpy_and_respects_the_mask():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 40, generator=g, dtype=torch.float64)
    lengths = [40, 25, 7]
    mask = torch.arange(40)[None, :] < torch.tensor(lengths)[:, None]  # [B, T]
    padded = torch.where(mask, x, torch.full_like(x, 99.0))  # garbage where padded
    out = box_smooth(padded, 5, mask)  # [B, T]
    for b, n in enumerate(lengths):
        ref = np.convolve(x[b, :n].numpy(), np.ones(5), mode="same")
        assert out[b, :n].numpy() == pytest.approx(ref, rel=1e-12)


def test_spread_word_loses_its_event_to_a_sharper_neighbour_without_smoothing():
    """Two words, n = 2. Word A's mass (0.8) is split over sub-frames 20 and 21 (0.4 each); word B's
    (1.2) sits in sub-frame 30. Marginal mode of event 1 maximises lam(t) * (Lam(T) - Lam(t)):
    A's left edge 0.4 * 2.0 = 0.8 < B's left edge 1.2 * 1.2 = 1.44; event 2 maximises
    lam(t) * Lam(t): B's right edge 1.2 * 2.0 = 2.4. Both events land in B's sub-frame: A is lost.
    Box-smoothed (5 sub-frames), A's plateau (0.8 over 19-22) competes with its whole mass:
    event 1: 0.8 * (10 - 0.4) = 7.68 at 19 beats B's 1.2 * 6.0 = 7.2 at 28, so A gets its event."""
    x = torch.full((60,), -30.0, dtype=torch.float64)
    x[20] = x[21] = np.log(0.4)
    x[30] = np.log(1.2)
    marginal = poisson_posterior_modes(x, 2)
    assert ((marginal >= 30) & (marginal < 31)).all()  # collapsed onto B
    smoothed = smoothed_posterior_modes(x, 2, tolerance_s=0.02, unit_s=0.01)
    assert abs(smoothed[0].item() - 21.0) <= 2.0  # A's onset (20|21 boundary) within 20 ms
    assert 28 <= smoothed[1].item() <= 33  # B's box
    assert smoothed[1].item() - smoothed[0].item() > 5


def test_smoothed_mode_agrees_with_the_authors_algorithm():
    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        T, n = 80 + 7 * trial, 2 + trial % 6
        x = -7 + 0.5 * torch.randn(T, generator=g, dtype=torch.float64)
        x[torch.randperm(T, generator=g)[:n]] = 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
        for box in (5, 9):
            ours = smoothed_posterior_modes(x, n, box=box).numpy()
            theirs = their_smoothed_mode(x.numpy(), n, box)
            assert ours == pytest.approx(theirs, abs=1e-6)


def test_n1_convention_is_the_centre_where_theirs_is_the_left_edge():
    x = torch.full((30,), -9.0, dtype=torch.float64)
    x[11], x[12], x[13] = -1.0, 0.0, -1.0  # the 5-wide box sums most at 12
    assert smoothed_posterior_modes(x, 1, box=5).tolist() == [12.5]
    assert their_smoothed_mode(x.numpy(), 1, 5).tolist() == [12.0]


def test_iterative_mode_picks_then_suppresses():
    """Box 3. Peaks of 1.0 at 10 and 12: the smoothed maximum is 11 (sees both: 2.0, vs 1.0 at 10
    or 12); suppressing 10-12 removes both, so the second pick is the 0.1/0.6/0.1 bump at 40."""
    x = torch.full((60,), -20.0, dtype=torch.float64)
    x[10] = x[12] = 0.0
    x[39], x[40], x[41] = np.log(0.1), np.log(0.6), np.log(0.1)
    assert iterative_posterior_modes(x, 2, box=3).tolist() == [11.5, 40.5]
    # equals the full re-smoothing each round (their loop), on random curves
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        y = -6 + 2 * torch.randn(120, generator=g, dtype=torch.float64)
        got = iterative_posterior_modes(y, 8, box=9)
        lam, ref = np.exp(y.numpy()), []
        for _ in range(8):
            f = int(np.argmax(np.log(np.convolve(lam, np.ones(9), mode="same") + 1e-12)))
            ref.append(f)
            lam[max(0, f - 4):f + 5] = 0.0
        assert got.tolist() == [f + 0.5 for f in sorted(ref)]
    assert iterative_posterior_modes(x, 5, box=59).numel() == 5  # all suppressed: still n positions


def test_smoothed_topk_for_binary_logits():
    """Logits: one sharp 3.0 at 5 vs a broad run of 1.0 over 20-24. Plain top-1 takes 5; the box
    average (5 wide) of sigmoid favours the run's centre 22 (sigmoid(1) = 0.73 x 5 / 5 = 0.73
    vs sigmoid(3) / 5 + 4 sigmoid(-4) / 5 = 0.20)."""
    z = torch.full((40,), -4.0)
    z[5] = 3.0
    z[20:25] = 1.0
    assert smoothed_topk(z, 1, box=5).tolist() == [22.5]
    assert decode("topk", z, 1, head="binary").tolist() == [5.5]
    assert decode("smoothed_topk", z, 1, head="binary", unit_s=0.01).tolist() == [22.5]


def test_registry_options_and_unit_s():
    assert decoder_spec("smoothed_posterior_mode").heads == ("poisson",)
    assert "tolerance_s" in decoder_spec("smoothed_posterior_mode").options
    assert decoder_spec("smoothed_topk").heads == ("binary",)
    x = torch.full((50,), -9.0, dtype=torch.float64)
    x[[10, 30]] = 0.0
    with pytest.raises(ValueError, match="needs unit_s"):
        decode("smoothed_posterior_mode", x, 2)
    with pytest.raises(ValueError, match="odd number"):
        smoothed_posterior_modes(x, 2, box=4)
    # the 40 ms preset smooths over 9 sub-frames at 10 ms, 5 at 20 ms sub-frames
    wide = decode("smoothed_posterior_mode_40ms", x, 2, unit_s=0.01)
    assert wide.tolist() == smoothed_posterior_modes(x, 2, box=9).tolist()
    assert decode("smoothed_posterior_mode_40ms", x, 2, unit_s=0.02).tolist() == \
        smoothed_posterior_modes(x, 2, box=5).tolist()
    assert smoothed_log_intensity(x, 1).numpy() == pytest.approx(np.log(np.exp(x.numpy()) + 1e-12))
