"""Exactness of the posterior-mode decoder against a dense brute-force search of Eq. 8."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from framecall.frames.decoding import (
    DECODERS, decode, expected_count, get_decoder, pick_peaks, poisson_posterior_medians,
    poisson_posterior_modes, topk_events, topn_nms,
)


def log_density(x: np.ndarray, n: int, i: int, t: np.ndarray) -> np.ndarray:
    """Eq. 8 at continuous positions t (frames), computed independently in numpy:
    (i-1) log Lam(t) + (n-i) log(Lam(T) - Lam(t)) + log lam(frame of t)."""
    x = x.astype(np.float64)
    T = x.size
    left = np.concatenate([[-np.inf], np.logaddexp.accumulate(x)])  # log Lam at edges
    right = np.concatenate([np.logaddexp.accumulate(x[::-1])[::-1], [-np.inf]])
    f = np.clip(np.floor(t).astype(int), 0, T - 1)
    s = np.clip(t - f, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        log_lam_t = np.logaddexp(left[f], np.log(s) + x[f])
        log_rest = np.logaddexp(right[f + 1], np.log1p(-s) + x[f])
    a, b = i - 1, n - i
    return (a * log_lam_t if a else 0.0) + (b * log_rest if b else 0.0) + x[f]


def brute_force_max(x: np.ndarray, n: int, i: int, per_frame: int = 64) -> float:
    T = x.size
    grid = (np.arange(T)[:, None] + np.linspace(0, 1, per_frame, endpoint=False)[None, :]).ravel()
    grid = np.concatenate([grid, np.nextafter(np.arange(1, T + 1, dtype=np.float64), 0)])
    return float(np.max(log_density(x, n, i, grid)))


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 400),
    n=st.integers(1, 50),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([0.1, 1.0, 3.0, 10.0]),
    offset=st.floats(-8, 4),
)
def test_posterior_mode_is_the_maximum(T, n, seed, scale, offset):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(T) * scale + offset
    modes = poisson_posterior_modes(torch.from_numpy(x), n).numpy()
    assert modes.shape == (n,) and ((modes >= 0) & (modes < T)).all()
    for i in range(1, n + 1):
        ours = log_density(x, n, i, modes[i - 1 : i])[0]
        assert ours >= brute_force_max(x, n, i) - 1e-6, (i, ours)


def test_single_event_flat_frame_returns_midpoint():
    x = torch.tensor([-3.0, 1.0, -2.0, 0.5])
    assert poisson_posterior_modes(x, 1).tolist() == [1.5]


def test_marginal_modes_collapse_on_sharper_peaks_where_nms_does_not():
    """Why the marginal posterior mode loses to top-n + NMS on multi-event items.

    Three events of equal mass (~7.4), the middle one spread over two sub-frames (lam 3.7
    each, log 1.3) and the others in one (lam 7.4, log 2.0). For event 2 of 3, u* =
    Lam(T)/2 = 11.06 lies in the spread peak: g = 2 log 11.06 + 1.3 = 6.11. But the left edge
    of frame 75 has g = log 14.73 + log 7.39 + 2.0 = 6.69: the log lam(t) term of the
    *marginal* density favours the sharper peak, so events 2 and 3 both land at frame 75.
    """
    x = torch.full((100,), -12.0)
    x[[10, 40, 41, 75]] = torch.tensor([2.0, 1.3, 1.3, 2.0])
    modes = poisson_posterior_modes(x, 3)
    assert [int(m) for m in modes] == [10, 75, 75]
    assert topn_nms(x, 3, min_separation=3).tolist() == [10.5, 40.5, 75.5]
    assert expected_count(x) == pytest.approx(float(torch.exp(x.double()).sum()), rel=1e-12)


def test_stable_at_five_minutes_500_events():
    """T = 30,000 sub-frames, n = 500, log-intensities in [-50, 50]: finite, in range,
    and optimal (checked against the brute force for 8 of the 500 events)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-50, 50, 30_000)
    modes = poisson_posterior_modes(torch.from_numpy(x), 500).numpy()
    assert np.isfinite(modes).all() and ((modes >= 0) & (modes < 30_000)).all()
    for i in (1, 2, 100, 250, 251, 400, 499, 500):
        ours = log_density(x, 500, i, modes[i - 1 : i])[0]
        assert np.isfinite(ours)
        assert ours >= brute_force_max(x, 500, i, per_frame=4) - 1e-6
    low = np.full(30_000, -50.0)
    low[[100, 20_000]] = -10.0
    m = poisson_posterior_modes(torch.from_numpy(low), 2).numpy()
    assert int(m[0]) == 100 and int(m[1]) == 20_000


def test_posterior_median():
    """One peak holding all mass: every median lies inside it. Uniform intensity over
    10 frames, n = 1: the median is the middle, 5.0."""
    x = torch.full((50,), -30.0)
    x[20] = 0.0
    med = poisson_posterior_medians(x, 3)
    assert ((med >= 20) & (med <= 21)).all() and (torch.diff(med) >= 0).all()
    assert poisson_posterior_medians(torch.zeros(10), 1).tolist() == pytest.approx([5.0])


def test_topk_nms_and_peaks():
    s = torch.tensor([0.0, 5, 4.9, 0, 0, 3, 0, 0, 0, 4])
    assert topk_events(s, 2).tolist() == [1, 2]
    assert topn_nms(s, 3, min_separation=2).tolist() == [1.5, 5.5, 9.5]  # 2 is suppressed by 1
    assert topn_nms(s, 20, min_separation=2).numel() <= 4  # runs out of frames, never crashes
    assert pick_peaks(s, 3.5, min_separation=2).tolist() == [1.5, 9.5]


def test_registry_and_dispatch():
    assert {"posterior_mode", "posterior_median", "topn_nms", "topk", "joint_dp", "smoothed_posterior_mode",
            "smoothed_posterior_mode_40ms", "iterative_posterior_mode", "smoothed_topk",
            "smoothed_topk_40ms"} == set(DECODERS)
    with pytest.raises(ValueError, match=r"unknown decoder 'viterbi'; valid: \["):
        get_decoder("viterbi")
    with pytest.raises(ValueError, match="needs a Poisson head"):
        decode("posterior_mode", torch.zeros(5), 1, head="binary")
    x = torch.full((200,), -20.0)
    x[[30, 90, 150]] = 0.0  # Lam(T) ~ 3
    assert decode("topn_nms", x, None).tolist() == [30.5, 90.5, 150.5]
    assert decode("topk", torch.tensor([-5.0, 3, -5, -5, -5, 2]), None, head="binary").tolist() == [1.5, 5.5]
    with pytest.raises(ValueError, match="NaN or inf"):
        poisson_posterior_modes(torch.tensor([0.0, float("nan")]), 1)


def test_joint_dp_is_the_best_ordered_set_with_the_gap():
    from itertools import combinations

    from framecall.frames.decoding import joint_dp

    # NMS takes the 5.0 at frame 3 first and must then drop both 4.0s (frames 1 and 5, within 2);
    # the joint optimum with gap > 2 is frames 0/1 and 5: 4 + 4 = 8 > 5 + 1 (hand-checked below)
    x = torch.tensor([1.0, 4.0, 0.0, 5.0, 0.0, 4.0, 0.0])
    assert joint_dp(x, 2, min_separation=2).tolist() == [1.5, 5.5]
    assert topn_nms(x, 2, min_separation=2).tolist() == [0.5, 3.5]  # 5 + 1 = 6 < 8
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # brute force on random curves
        y = torch.randn(12, generator=g)
        got = joint_dp(y, 3, min_separation=1)
        best = max((c for c in combinations(range(12), 3) if all(b - a > 1 for a, b in zip(c, c[1:]))),
                   key=lambda c: float(sum(y[i] for i in c)))
        assert got.tolist() == [i + 0.5 for i in best]
    assert joint_dp(x, 5, min_separation=2).numel() == 3  # only 3 fit in 7 frames with gap 3
