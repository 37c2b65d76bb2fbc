"""Frame losses, registered by name: ``(head_output, event_counts, mask, **options) -> Tensor[B]``.

All inputs are on the sub-frame axis, [B, T]: ``head_output`` (logits or log-intensities),
``event_counts`` (events whose time falls in each sub-frame) and ``mask`` (valid frames).
Everything is computed in float32 (or float64 if given) regardless of the model dtype.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F


class FrameLoss(Protocol):
    def __call__(self, head_output: torch.Tensor, event_counts: torch.Tensor, mask: torch.Tensor,
                 **options) -> torch.Tensor: ...


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def binary_frame_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    pos_weight: str | float = "auto",
    pos_weight_scale: float = 1.0,
) -> torch.Tensor:
    """Class-reweighted BCE per example, averaged over its valid frames. -> [B].

    logits, targets, mask: [B, T]; a frame is positive where ``targets > 0``.
    ``pos_weight="auto"``: per example #negative / #positive valid frames (seed §2.1), so
    positives and negatives carry equal total weight; times ``pos_weight_scale`` (what a
    sweep tunes). A float sets the weight directly (then also scaled).
    loss_b = sum_t m_t * -(w * y_t log s(x_t) + (1 - y_t) log(1 - s(x_t))) / sum_t m_t
    """
    logits = _as_float(logits)
    m = mask.to(logits.dtype)
    y = (targets > 0).to(logits.dtype) * m
    n_pos = y.sum(-1)
    n_valid = m.sum(-1)
    if pos_weight == "auto":
        w = (n_valid - n_pos) / n_pos.clamp(min=1.0)
    elif isinstance(pos_weight, (int, float)) and not isinstance(pos_weight, bool):
        w = torch.full_like(n_pos, float(pos_weight))
    else:
        raise ValueError(f"pos_weight must be 'auto' or a number, got {pos_weight!r}")
    w = (w * pos_weight_scale).clamp(min=0.0)
    # -log s(x) = softplus(-x), -log(1 - s(x)) = softplus(x): stable for any logit
    per_frame = w[:, None] * y * F.softplus(-logits) + (1 - y) * F.softplus(logits)
    return (per_frame * m).sum(-1) / n_valid.clamp(min=1.0)


def poisson_nll(
    log_intensity: torch.Tensor,
    event_counts: torch.Tensor,
    mask: torch.Tensor,
    conditional: bool = False,
) -> torch.Tensor:
    """Negative log-likelihood of an inhomogeneous Poisson process per example. -> [B].

    log_intensity, event_counts, mask: [B, T]; lam_t = exp(log_intensity_t) per sub-frame,
    Lam(T) = sum of lam over valid frames (logsumexp), n = sum of counts.
    unconditional: -sum_j log lam(t_j) + Lam(T)        (the paper's code; learns the count)
    conditional:   -sum_j log lam(t_j) + n log Lam(T)  (seed Eq. 5, without the constant log n!)
    n = 0 is allowed in both (the conditional loss is then 0).
    """
    x = _as_float(log_intensity)
    m = mask.bool()
    counts = torch.where(m, _as_float(event_counts).to(x.dtype), torch.zeros_like(x))
    log_total = torch.logsumexp(x.masked_fill(~m, float("-inf")), dim=-1)  # log Lam(T), [B]
    data_term = -(counts * x.masked_fill(~m, 0.0)).sum(-1)
    if conditional:
        n = counts.sum(-1)
        return data_term + torch.where(n > 0, n * log_total, torch.zeros_like(n))
    return data_term + torch.exp(log_total).nan_to_num(nan=0.0)


def _poisson(head_output, event_counts, mask, **options):
    return poisson_nll(head_output, event_counts, mask, conditional=False, **options)


def _poisson_conditional(head_output, event_counts, mask, **options):
    return poisson_nll(head_output, event_counts, mask, conditional=True, **options)


FRAME_LOSSES: dict[str, Callable[..., torch.Tensor]] = {}
HEAD_OF_LOSS: dict[str, str] = {}
"""loss name -> the head it trains (filled by :func:`register_frame_loss`)."""


def register_frame_loss(name: str, fn: Callable[..., torch.Tensor], head: str) -> None:
    """One registration per loss: its function and the head (poisson | binary) it trains."""
    if name in FRAME_LOSSES:
        raise ValueError(f"frame loss {name!r} is registered twice")
    FRAME_LOSSES[name], HEAD_OF_LOSS[name] = fn, head


register_frame_loss("poisson", _poisson, head="poisson")
register_frame_loss("poisson_conditional", _poisson_conditional, head="poisson")
register_frame_loss("binary", binary_frame_loss, head="binary")


def get_frame_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss registered as ``name``; an unknown name lists the valid ones."""
    try:
        return FRAME_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown frame loss {name!r}; valid: {sorted(FRAME_LOSSES)}") from None
