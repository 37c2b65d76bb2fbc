"""Decoding frame-head outputs into event positions on the sub-frame axis.

Positions are continuous, in sub-frames: sub-frame f covers [f, f+1), its centre is
f + 0.5. :func:`framecall.frames.units.FrameGrid.to_seconds` converts them.

Decoders are registered by name (:data:`DECODERS`), each ``(scores [T], n) -> Tensor[n]``
(float64 positions, ascending where the decoder orders them), so jobs and benchmarks
compare them by config string. ``register_decoder`` records the heads a decoder reads and
the keyword options it takes:

- ``min_separation`` (sub-frames): ``topn_nms``, ``joint_dp``.
- ``tolerance_s`` / ``box`` / ``unit_s``: the smoothed decoders, whose box of ``box`` sub-frames
  (odd) comes from a tolerance: ``box_width(tolerance_s, unit_s)`` = 5 for 20 ms and 9 for 40 ms
  at 10 ms sub-frames. ``smoothed_posterior_mode`` / ``iterative_posterior_mode`` /
  ``smoothed_topk`` use 20 ms, the ``_40ms`` presets 40 ms. :func:`decode` passes ``unit_s``.

n = 1 convention: a single event decoded from one sub-frame is placed at its centre
(f + 0.5). The authors' code (inkitori/taudio) returns the left edge f, 5 ms earlier at 10 ms
sub-frames; for n >= 2 the posterior modes agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from scipy.special import betaincinv

_NEG_INF = float("-inf")
_MAX_CELLS = 4_000_000  # bound the [n, T] work matrices (float64: 32 MB each)


def _mul0(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """a * x with 0 * (-inf) = 0 (a term with exponent 0 is absent)."""
    return torch.where(a == 0, torch.zeros_like(x), a * x)


def _log_cumulative(log_intensity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log Lam at the frame edges, from the left and from the right.

    log_intensity [T] -> (log_left [T+1], log_right [T+1]) with
    log_left[f] = log sum_{g<f} lam_g and log_right[f] = log sum_{g>=f} lam_g. Summing from
    each side separately avoids the cancellation of computing Lam(T) - Lam(t).
    """
    x = log_intensity.to(torch.float64)
    pad = torch.full((1,), _NEG_INF, dtype=torch.float64, device=x.device)
    log_left = torch.cat([pad, torch.logcumsumexp(x, 0)])
    log_right = torch.cat([torch.logcumsumexp(x.flip(0), 0).flip(0), pad])
    return log_left, log_right


def expected_count(log_intensity: torch.Tensor) -> float:
    """Lam(T) = sum_t lam_t, the expected number of events (for "how many" questions)."""
    return float(torch.exp(torch.logsumexp(log_intensity.to(torch.float64), 0)))


def _check(scores: torch.Tensor, n: int) -> None:
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"expected scores [T] with T >= 1, got shape {tuple(scores.shape)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")


def poisson_posterior_modes(log_intensity: torch.Tensor, n: int) -> torch.Tensor:
    """Exact posterior mode of each of n ordered events (seed Eq. 8). [T] -> [n] float64.

    For i = 1..n, maximises over continuous t in [0, T]
        g_i(t) = (i-1) log Lam(t) + (n-i) log(Lam(T) - Lam(t)) + log lam(t).
    Inside frame f, log lam is constant and Lam is linear, so g_i is concave in u = Lam(t)
    with maximiser u* = (i-1)/(n-1) * Lam(T) (the Beta mode): the frame's best point is
    u* clipped to [Lam(f), Lam(f+1)], i.e. one of its two edges or, in the one frame whose
    Lam-range holds u*, u* itself. The best frame is an argmax over [n, T] edge values.
    O(nT) time, chunked over i to bound memory. For n = 1 the density is flat inside a
    frame: the midpoint of the highest-intensity frame is returned. A right-edge optimum is
    returned as the largest float64 below f + 1, so the position lies in the frame it
    belongs to. (One row of :func:`_posterior_modes_rows`, which decodes a padded batch.)
    """
    _check(log_intensity, n)
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    x = log_intensity.to(torch.float64)
    return _posterior_modes_rows(x[None], torch.tensor([n]), torch.tensor([x.numel()]))[0]


def _posterior_modes_rows(x: torch.Tensor, n: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Posterior modes of a padded batch: x float64 [B, T] (-inf past each row's length), n [B] >= 1,
    lengths [B] -> [B, max n] float64; row b's first n[b] entries are its modes, the rest are filler."""
    bsz, t_frames = x.shape
    n_max = int(n.max())
    nf = n.to(torch.float64)[:, None]  # [B, 1]
    out = torch.full((bsz, n_max), float("nan"), dtype=torch.float64)
    if n_max >= 2:
        log_left, log_right = _log_cumulative_rows(x)
        chunk = max(1, _MAX_CELLS // (bsz * (t_frames + 1)))
        for start in range(0, n_max, chunk):
            i = torch.arange(start + 1, min(n_max, start + chunk) + 1, dtype=torch.float64)[None, :]  # [1, c]
            out[:, start : start + i.shape[1]] = _modes_chunk(x, log_left, log_right, nf, i, lengths)
    single = n == 1  # flat inside a frame: the centre of the best one
    out[single, 0] = torch.argmax(x[single], dim=1).to(torch.float64) + 0.5
    return out


def _log_cumulative_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_log_cumulative` of every row: [B, T] -> (log_left [B, T+1], log_right [B, T+1])."""
    pad = torch.full((x.shape[0], 1), _NEG_INF, dtype=torch.float64, device=x.device)
    log_left = torch.cat([pad, torch.logcumsumexp(x, 1)], 1)
    log_right = torch.cat([torch.logcumsumexp(x.flip(1), 1).flip(1), pad], 1)
    return log_left, log_right


def _modes_chunk(x: torch.Tensor, log_left: torch.Tensor, log_right: torch.Tensor, nf: torch.Tensor,
                 i: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Modes of events i [1, c] (1-based) of every row: [B, c]; columns with i > n[b] are filler."""
    a = (i - 1).expand(x.shape[0], -1)  # [B, c]
    b = (nf - i).clamp(min=0)  # [B, c]
    edge = _mul0(a[..., None], log_left[:, None, :]) + _mul0(b[..., None], log_right[:, None, :])  # [B, c, T+1]
    best_left, f_left = (edge[..., :-1] + x[:, None, :]).max(dim=2)  # value at frame f's left edge
    best_right, f_right = (edge[..., 1:] + x[:, None, :]).max(dim=2)  # at its right edge
    # interior candidate: the frame whose Lam-range holds u*
    frac = (a / (nf - 1).clamp(min=1)).clamp(max=1.0)
    log_total = log_left.gather(1, lengths[:, None])  # [B, 1]
    log_u = torch.log(frac) + log_total  # log u*, -inf for i = 1
    log_rest = torch.log1p(-frac) + log_total  # log(Lam(T) - u*), -inf for i = n
    f_in = torch.minimum(torch.searchsorted(log_left[:, 1:].contiguous(), log_u), (lengths - 1)[:, None])
    left_in, right_in = log_left.gather(1, f_in), log_left.gather(1, f_in + 1)
    rest_in, rest_next = log_right.gather(1, f_in), log_right.gather(1, f_in + 1)
    valid = (left_in < log_u) & (log_u < right_in) & (rest_next < log_rest) & (log_rest < rest_in)
    lam_f = x.gather(1, f_in)
    inner_val = _mul0(a, log_u) + _mul0(b, log_rest) + lam_f
    inner_val = torch.where(valid, inner_val, torch.full_like(inner_val, _NEG_INF))
    # position inside the frame, computed from the nearer side of Lam to avoid cancellation
    from_left = torch.exp(log_u - lam_f) - torch.exp(left_in - lam_f)
    from_right = 1.0 - (torch.exp(log_rest - lam_f) - torch.exp(rest_next - lam_f))
    s = torch.where(frac <= 0.5, from_left, from_right).clamp(0.0, 1.0)
    inner_pos = f_in.to(torch.float64) + s
    right_pos = torch.nextafter((f_right + 1).to(torch.float64), f_right.to(torch.float64))
    pos = torch.where(best_left >= best_right, f_left.to(torch.float64), right_pos)
    return torch.where(inner_val >= torch.maximum(best_left, best_right), inner_pos, pos)


def poisson_posterior_medians(log_intensity: torch.Tensor, n: int) -> torch.Tensor:
    """Posterior median of each of n ordered events. [T] -> [n] float64, ascending.

    Under the time rescaling u = Lam(t) / Lam(T), the i-th of n events is Beta(i, n-i+1);
    its median is mapped back through Lam^-1 (linear inside each frame).
    """
    _check(log_intensity, n)
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    x = log_intensity.to(torch.float64)
    lam = torch.exp(x - x.max())  # scale-free: only ratios matter
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(lam, 0)])
    i = torch.arange(1, n + 1, dtype=torch.float64)
    q = torch.as_tensor(betaincinv(i.numpy(), (n - i + 1).numpy(), 0.5), dtype=torch.float64)
    target = q * cum[-1]
    f = (torch.searchsorted(cum[1:].contiguous(), target)).clamp(max=x.numel() - 1)
    s = ((target - cum[f]) / lam[f]).clamp(0.0, 1.0)
    return f.to(torch.float64) + s


def topk_events(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest-scoring frames, ascending. [T] -> LongTensor[min(k, T)]."""
    _check(scores, k)
    k = min(k, scores.numel())
    return torch.sort(torch.topk(scores, k).indices).values


def topn_nms(scores: torch.Tensor, n: int, min_separation: int = 3) -> torch.Tensor:
    """Greedy top-n peaks with non-maximum suppression. [T] -> [<= n] float64 frame centres.

    Takes the highest frame, suppresses frames within ``min_separation`` of it, repeats.
    Returns fewer than n positions only when every frame is suppressed (a metric then
    counts the rest as misses).
    """
    _check(scores, n)
    s = scores.to(torch.float64).clone()
    picked = []
    for _ in range(n):
        f = int(torch.argmax(s))
        if s[f] == _NEG_INF:
            break
        picked.append(f)
        s[max(0, f - min_separation) : f + min_separation + 1] = _NEG_INF
    return torch.sort(torch.tensor(picked, dtype=torch.float64)).values + 0.5


def joint_dp(scores: torch.Tensor, n: int, min_separation: int = 3) -> torch.Tensor:
    """Jointly best n ordered events: maximise sum_i scores[t_i] over t_1 < ... < t_n with
    t_{i+1} - t_i > min_separation. [T] -> [<= n] float64 frame centres.

    For a Poisson head given n, the joint density of the ordered events is proportional to
    prod_i lam(t_i), so this is the joint MAP (with a minimum gap), where the posterior mode
    maximises each event's marginal on its own and top-n NMS picks greedily. Exact dynamic
    programme, O(nT): best_k = cummax(shift(best_{k-1}, gap) + scores), then backtracking.
    """
    _check(scores, n)
    x = scores.to(torch.float64)
    T, gap = x.numel(), min_separation + 1
    n = min(n, (T - 1) // gap + 1)  # more events than fit with the gap: return as many as fit
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    prev = torch.zeros(T, dtype=torch.float64)  # best_0 = 0 everywhere
    argmaxes = []
    for k in range(n):
        shifted = torch.full((T,), _NEG_INF, dtype=torch.float64)
        if k == 0:
            shifted[:] = 0.0
        elif gap < T:
            shifted[gap:] = prev[: T - gap]
        best, idx = torch.cummax(shifted + x, 0)
        argmaxes.append(idx)
        prev = best
    picked, t = [], T - 1
    for k in range(n - 1, -1, -1):
        f = int(argmaxes[k][t])
        picked.append(f)
        t = f - gap
    return torch.tensor(picked[::-1], dtype=torch.float64) + 0.5


def pick_peaks(scores: torch.Tensor, threshold: float, min_separation: int = 3) -> torch.Tensor:
    """Peaks above ``threshold`` for unknown n (NMS until the best left is below it). -> [m]."""
    _check(scores, 0)
    s = scores.to(torch.float64).clone()
    picked = []
    while True:
        f = int(torch.argmax(s))
        if not s[f] >= threshold:
            break
        picked.append(f)
        s[max(0, f - min_separation) : f + min_separation + 1] = _NEG_INF
    return torch.sort(torch.tensor(picked, dtype=torch.float64)).values + 0.5


def _topk_centres(scores: torch.Tensor, n: int) -> torch.Tensor:
    return topk_events(scores, n).to(torch.float64) + 0.5


# ---- smoothed decoders (the authors' reported decoding, inkitori/taudio utils/poisson.py) --------------

SMOOTH_EPS = 1e-12
"""Added to the box-smoothed intensity before the log, as the authors do (their ``+ 1e-12``)."""
DEFAULT_TOLERANCE_S = 0.02


def box_width(tolerance_s: float, unit_s: float) -> int:
    """Odd box width in sub-frames for a tolerance: int(2 * tol / unit), plus 1 if even.

    The authors' rule: 5 sub-frames for 20 ms and 9 for 40 ms at 10 ms sub-frames; a tolerance
    under half a sub-frame gives 1 (no smoothing).
    """
    if not tolerance_s >= 0 or not unit_s > 0:
        raise ValueError(f"need tolerance_s >= 0 and unit_s > 0, got {tolerance_s}, {unit_s}")
    width = int(2 * tolerance_s / unit_s + 1e-9)  # 1e-9: 2 * 0.02 / 0.01 is 3.9999999999999996
    return width + 1 if width % 2 == 0 else width


def _resolve_box(name: str, tolerance_s: float, box: int | None, unit_s: float | None) -> int:
    if box is not None:
        if box < 1 or box % 2 == 0:
            raise ValueError(f"decoder {name!r}: box must be an odd number of sub-frames >= 1, got {box}")
        return box
    if unit_s is None:
        raise ValueError(f"decoder {name!r} needs unit_s (seconds per sub-frame) to turn its {tolerance_s:g} s "
                         "tolerance into a box width, or an explicit box in sub-frames")
    return box_width(tolerance_s, unit_s)


def box_smooth(values: torch.Tensor, box: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Centred box sum (np.convolve(v, ones(box), "same")): [..., T] -> [..., T] float64.

    Zero beyond the ends and, with ``mask`` [..., T] (True = valid), at padded positions, so a
    padded row smooths exactly like the unpadded item. A direct sum (conv1d), not cumsum
    differences, which would cancel small intensities next to large ones.
    """
    x = values.to(torch.float64)
    if mask is not None:
        x = torch.where(mask, x, torch.zeros_like(x))
    flat = x.reshape(-1, 1, x.shape[-1])  # [B, 1, T]
    kernel = torch.ones(1, 1, box, dtype=torch.float64, device=x.device)
    return torch.nn.functional.conv1d(flat, kernel, padding=box // 2).reshape(x.shape)


def smoothed_log_intensity(log_intensity: torch.Tensor, box: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """log(box_smooth(exp(x)) + 1e-12): [..., T] -> [..., T] float64; batched over a padded batch with ``mask``."""
    return torch.log(box_smooth(torch.exp(log_intensity.to(torch.float64)), box, mask) + SMOOTH_EPS)


def smoothed_posterior_modes(log_intensity: torch.Tensor, n: int, tolerance_s: float = DEFAULT_TOLERANCE_S,
                             box: int | None = None, unit_s: float | None = None) -> torch.Tensor:
    """Posterior modes on the box-smoothed intensity (the authors' reported decoder). [T] -> [n].

    The intensity is summed over a centred box of ``box`` sub-frames (default: from
    ``tolerance_s``, see :func:`box_width`), then ``log(. + 1e-12)``, then the exact posterior
    mode (:func:`poisson_posterior_modes`). A word whose mass spreads over two sub-frames then
    competes with its whole mass instead of losing its event to a sharper neighbour.
    n = 1: framecall returns the centre of the best sub-frame; the authors' code its left edge.
    """
    _check(log_intensity, n)
    width = _resolve_box("smoothed_posterior_mode", tolerance_s, box, unit_s)
    return poisson_posterior_modes(smoothed_log_intensity(log_intensity, width), n)


def iterative_posterior_modes(log_intensity: torch.Tensor, n: int, tolerance_s: float = DEFAULT_TOLERANCE_S,
                              box: int | None = None, unit_s: float | None = None) -> torch.Tensor:
    """Greedy smoothed posterior mode with suppression (the authors' speed benchmark). [T] -> [n], ascending.

    n times: box-smooth the intensity, take the n = 1 posterior mode (the best smoothed sub-frame),
    then zero the raw intensity over the box centred there. Positions are sub-frame centres
    (the authors' code returns left edges). When everything is suppressed the best is the first
    sub-frame, as in their code, so n positions always come back.
    """
    _check(log_intensity, n)
    width = _resolve_box("iterative_posterior_mode", tolerance_s, box, unit_s)
    lam = torch.exp(log_intensity.to(torch.float64))  # [T]
    t_frames, half = lam.numel(), width // 2
    smooth = box_smooth(lam, width)  # [T]
    picked = []
    for _ in range(n):
        f = int(torch.argmax(torch.log(smooth + SMOOTH_EPS)))  # the n = 1 mode; first on ties, as numpy
        picked.append(f)
        lo, hi = max(0, f - half), min(t_frames, f + half + 1)
        lam[lo:hi] = 0.0
        # only outputs whose box overlaps [lo, hi) change: re-smooth that stretch
        out_lo, out_hi = max(0, lo - half), min(t_frames, hi + half)
        seg_lo = max(0, out_lo - half)
        seg = box_smooth(lam[seg_lo:min(t_frames, out_hi + half)], width)
        smooth[out_lo:out_hi] = seg[out_lo - seg_lo:out_hi - seg_lo]
    return torch.sort(torch.tensor(picked, dtype=torch.float64)).values + 0.5


def smoothed_topk(logits: torch.Tensor, n: int, tolerance_s: float = DEFAULT_TOLERANCE_S, box: int | None = None,
                  unit_s: float | None = None) -> torch.Tensor:
    """Top-n sub-frames of the box-averaged probability (the authors' binary decoder). [T] -> [min(n, T)].

    sigmoid(logits), averaged over a centred box (zero beyond the ends), top n, sub-frame centres.
    """
    _check(logits, n)
    width = _resolve_box("smoothed_topk", tolerance_s, box, unit_s)
    smooth = box_smooth(torch.sigmoid(logits.to(torch.float64)), width) / width
    return _topk_centres(smooth, n)


# ---- batched decoders: a padded batch scores [B, T] + mask [B, T] (True = valid, a prefix of each row) --------
# Each returns what the per-item decoder returns for every row's valid prefix (tests/frames/test_batched_decoding.py).


def _batch_lengths(scores: torch.Tensor, n: list[int], mask: torch.Tensor) -> torch.Tensor:
    """Checks a padded batch -> lengths [B]; errors name the row."""
    if scores.dim() != 2 or mask.shape != scores.shape or len(n) != scores.shape[0]:
        raise ValueError(f"expected scores [B, T], mask [B, T] and B counts, got {tuple(scores.shape)}, "
                         f"{tuple(mask.shape)} and {len(n)}")
    lengths = mask.sum(1)
    prefix = torch.arange(scores.shape[1], device=mask.device)[None, :] < lengths[:, None]
    for b in range(scores.shape[0]):
        if lengths[b] == 0 or not torch.equal(mask[b], prefix[b]):
            raise ValueError(f"row {b}: the mask must be a non-empty prefix (padding on the right)")
        if n[b] < 0:
            raise ValueError(f"row {b}: n must be >= 0, got {n[b]}")
        if not torch.isfinite(scores[b][mask[b]]).all():
            raise ValueError(f"row {b}: scores contain NaN or inf")
    return lengths


def topn_nms_batch(scores: torch.Tensor, n: list[int], mask: torch.Tensor, min_separation: int = 3) -> list[torch.Tensor]:
    """:func:`topn_nms` of every row at once: max(n) argmax-and-suppress steps over [B, T]."""
    _batch_lengths(scores, n, mask)
    s = scores.to(torch.float64).masked_fill(~mask, _NEG_INF)
    cols = torch.arange(s.shape[1], device=s.device)[None, :]
    counts = torch.tensor(n, device=s.device)
    picked = torch.full((s.shape[0], max(n, default=0)), -1, dtype=torch.int64, device=s.device)
    for k in range(picked.shape[1]):
        f = torch.argmax(s, dim=1)  # [B], first on ties as in topn_nms
        active = (k < counts) & (s.gather(1, f[:, None])[:, 0] != _NEG_INF)
        picked[:, k] = torch.where(active, f, -1)
        s = s.masked_fill(((cols - f[:, None]).abs() <= min_separation) & active[:, None], _NEG_INF)
    return [torch.sort(row[row >= 0].to(torch.float64).cpu()).values + 0.5 for row in picked]


def _modes_of_rows(x: torch.Tensor, n: list[int], lengths: torch.Tensor) -> list[torch.Tensor]:
    """Posterior modes of the rows of x [B, T] (-inf padded) with n[b] events: [n[b]] each."""
    counts = torch.tensor(n)
    out = [torch.zeros(0, dtype=torch.float64) for _ in n]
    keep = torch.nonzero(counts > 0)[:, 0]
    if keep.numel():
        modes = _posterior_modes_rows(x[keep].cpu(), counts[keep], lengths[keep].cpu())
        for j, b in enumerate(keep.tolist()):
            out[b] = modes[j, : n[b]].clone()
    return out


def posterior_modes_batch(log_intensity: torch.Tensor, n: list[int], mask: torch.Tensor) -> list[torch.Tensor]:
    """:func:`poisson_posterior_modes` of every row: the [B, n, T] edge values at once."""
    lengths = _batch_lengths(log_intensity, n, mask)
    return _modes_of_rows(log_intensity.to(torch.float64).masked_fill(~mask, _NEG_INF), n, lengths)


def smoothed_posterior_modes_batch(log_intensity: torch.Tensor, n: list[int], mask: torch.Tensor,
                                   tolerance_s: float = DEFAULT_TOLERANCE_S, box: int | None = None,
                                   unit_s: float | None = None) -> list[torch.Tensor]:
    """:func:`smoothed_posterior_modes` of every row: one masked box smoothing, then batched modes."""
    lengths = _batch_lengths(log_intensity, n, mask)
    width = _resolve_box("smoothed_posterior_mode", tolerance_s, box, unit_s)
    smoothed = smoothed_log_intensity(log_intensity, width, mask).masked_fill(~mask, _NEG_INF)
    return _modes_of_rows(smoothed, n, lengths)


@dataclass(frozen=True)
class DecoderSpec:
    """A registered decoder and the facts its callers check."""

    fn: Callable[..., torch.Tensor]
    """``fn(scores [T], n, **options) -> event frame centres [n]``."""
    heads: tuple[str, ...]
    """Heads whose scores it reads: a Poisson posterior needs log-intensities, not binary logits."""
    options: tuple[str, ...] = ()
    """Keyword options it takes (``min_separation``: picked events stay that many frames apart)."""
    batch: Callable[..., list[torch.Tensor]] | None = None
    """``batch(scores [B, T], n [B], mask [B, T], **options) -> [fn(row, n_b) per row]``, or None: a loop."""


DECODER_SPECS: dict[str, DecoderSpec] = {}
DECODERS: dict[str, Callable[..., torch.Tensor]] = {}
"""name -> decoder function (a view of DECODER_SPECS)."""


def register_decoder(name: str, fn: Callable[..., torch.Tensor], heads: tuple[str, ...] = ("poisson", "binary"),
                     options: tuple[str, ...] = (), batch: Callable[..., list[torch.Tensor]] | None = None) -> None:
    if name in DECODER_SPECS:
        raise ValueError(f"decoder {name!r} is registered twice")
    DECODER_SPECS[name] = DecoderSpec(fn, heads, options, batch)
    DECODERS[name] = fn


register_decoder("posterior_mode", poisson_posterior_modes, heads=("poisson",), batch=posterior_modes_batch)
register_decoder("posterior_median", poisson_posterior_medians, heads=("poisson",))
register_decoder("topn_nms", topn_nms, options=("min_separation",), batch=topn_nms_batch)
register_decoder("topk", _topk_centres)
register_decoder("joint_dp", joint_dp, options=("min_separation",))
_SMOOTH_OPTIONS = ("tolerance_s", "box", "unit_s")
register_decoder("smoothed_posterior_mode", smoothed_posterior_modes, heads=("poisson",), options=_SMOOTH_OPTIONS,
                 batch=smoothed_posterior_modes_batch)
register_decoder("smoothed_posterior_mode_40ms", partial(smoothed_posterior_modes, tolerance_s=0.04),
                 heads=("poisson",), options=_SMOOTH_OPTIONS,
                 batch=partial(smoothed_posterior_modes_batch, tolerance_s=0.04))
register_decoder("iterative_posterior_mode", iterative_posterior_modes, heads=("poisson",), options=_SMOOTH_OPTIONS)
register_decoder("smoothed_topk", smoothed_topk, heads=("binary",), options=_SMOOTH_OPTIONS)
register_decoder("smoothed_topk_40ms", partial(smoothed_topk, tolerance_s=0.04), heads=("binary",),
                 options=_SMOOTH_OPTIONS)


def decoder_spec(name: str) -> DecoderSpec:
    try:
        return DECODER_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown decoder {name!r}; valid: {sorted(DECODER_SPECS)}") from None


def get_decoder(name: str) -> Callable[..., torch.Tensor]:
    return decoder_spec(name).fn


def decoder_serves(name: str, head: str) -> bool:
    """Whether decoder ``name`` reads the scores of a ``head`` head."""
    return head in decoder_spec(name).heads


def decode(name: str, scores: torch.Tensor, n: int | None, head: str = "poisson",
           min_separation: int = 3, unit_s: float | None = None) -> torch.Tensor:
    """Decode one item: scores [T] -> event frame centres [n]. ``n=None`` (count unknown): a
    Poisson head uses round(Lam(T)); a binary head keeps the peaks with probability above 0.5.
    ``min_separation`` applies to the decoders that take it (and to the binary peaks);
    ``unit_s`` (seconds per sub-frame, ``FrameGrid.unit_s``) to those with a tolerance in seconds."""
    spec = decoder_spec(name)
    if head not in spec.heads:
        wanted = " or ".join({"poisson": "Poisson"}.get(h, h) for h in spec.heads)
        raise ValueError(f"decoder {name!r} needs a {wanted} head's scores, not a {head} head's")
    if n is None:
        if head == "binary":
            return pick_peaks(scores, 0.0, min_separation)  # logit 0 = p 0.5
        n = int(round(expected_count(scores)))
    given = {"min_separation": min_separation, "unit_s": unit_s}
    return spec.fn(scores, n, **{k: v for k, v in given.items() if k in spec.options})


def decode_batch(name: str, scores: torch.Tensor, mask: torch.Tensor, n: list[int | None], head: str = "poisson",
                 min_separation: int = 3, unit_s: float | None = None) -> list[torch.Tensor]:
    """:func:`decode` of every row of a padded batch (scores [B, T], mask [B, T] True on each row's valid
    prefix): the decoder's batched form where it has one (``DecoderSpec.batch``), else a loop; a batch
    with a count unknown (``n[b] = None``) is decoded row by row, as :func:`decode` does it. -> [n_b] per row."""
    spec = decoder_spec(name)
    if spec.batch is None or head not in spec.heads or any(k is None for k in n):
        return [decode(name, scores[b][mask[b]], n[b], head, min_separation, unit_s) for b in range(len(n))]
    given = {"min_separation": min_separation, "unit_s": unit_s}
    counts = [int(k) for k in n if k is not None]
    return spec.batch(scores, counts, mask, **{k: v for k, v in given.items() if k in spec.options})


def decode_curves(name: str, curves: list[torch.Tensor], n: list[int | None], head: str = "poisson",
                  min_separation: int = 3, unit_s: float | None = None) -> list[torch.Tensor]:
    """:func:`decode_batch` of curves of different lengths ([T_b] each), padded here. -> [n_b] per curve."""
    if not curves:
        return []
    lengths = torch.tensor([c.numel() for c in curves])
    padded = torch.nn.utils.rnn.pad_sequence(curves, batch_first=True)  # [B, T_max]
    valid = torch.arange(padded.shape[1])[None, :] < lengths[:, None]  # [B, T_max]
    return decode_batch(name, padded, valid, n, head, min_separation, unit_s)
