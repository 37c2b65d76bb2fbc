"""GRPO's pure-function core: advantage estimators, KL estimators, policy losses and loss
aggregations, each registered by name and picked by a config string (verl ``core_algos`` style).

Shapes: ``B`` sequences (= prompts x G samples), ``L`` completion tokens, ``P`` prompts, ``G``
samples per prompt, ``V`` vocabulary. ``mask`` marks the completion tokens that count.

- advantages: ``get_advantage(name)(rewards, group_ids=None, eps=1e-6)``; ``rewards`` is
  ``[P, G]`` (one row per prompt) or flat ``[B]`` with ``group_ids`` ``[B]`` (groups may differ in size).
- KL: ``get_kl(name)(logp, ref_logp) -> [B, L]`` per token.
- policy loss: ``get_policy_loss(name)(logp, old_logp, advantages, mask, clip_eps_low, clip_eps_high, agg)``.
- :func:`grpo_objective` = policy loss + ``kl_coef`` x KL (KL in the loss, as in GRPO and verl's
  ``use_kl_loss``, not in the reward).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {}
KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}
POLICY_LOSSES: dict[str, Callable[..., tuple[torch.Tensor, dict[str, float]]]] = {}
LOSS_AGGREGATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}

# verl clamps log-ratios to +-20 before exp: a padded or diverged token must not overflow to inf
_MAX_LOG_RATIO = 20.0


def _registrar(registry: dict[str, Any], kind: str) -> Callable[..., Callable[[Any], Any]]:
    def register(*names: str) -> Callable[[Any], Any]:
        def add(fn: Any) -> Any:
            for name in names:
                if name in registry:
                    raise ValueError(f"{kind} {name!r} is already registered")
                registry[name] = fn
            return fn
        return add
    return register


def _lookup(registry: dict[str, Any], kind: str, name: str) -> Any:
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; valid: {sorted(registry)}") from None


register_advantage = _registrar(ADVANTAGES, "advantage estimator")
register_kl = _registrar(KL_ESTIMATORS, "KL estimator")
register_policy_loss = _registrar(POLICY_LOSSES, "policy loss")
register_loss_agg = _registrar(LOSS_AGGREGATIONS, "loss aggregation")


def get_advantage(name: str) -> Callable[..., torch.Tensor]:
    return _lookup(ADVANTAGES, "advantage estimator", name)


def get_kl(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return _lookup(KL_ESTIMATORS, "KL estimator", name)


def get_policy_loss(name: str) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
    return _lookup(POLICY_LOSSES, "policy loss", name)


def get_loss_agg(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return _lookup(LOSS_AGGREGATIONS, "loss aggregation", name)


# ---------------------------------------------------------------- groups and advantages


class _Groups:
    """Flat rewards ``[B]`` with each sample's group number ``inverse`` ``[B]`` and group sizes ``[P]``."""

    def __init__(self, rewards: torch.Tensor, group_ids: torch.Tensor | Sequence[Hashable] | None) -> None:
        rewards = rewards.detach()  # advantages are constants of the policy-gradient step
        self.shape = rewards.shape
        if group_ids is None:
            if rewards.dim() != 2:
                raise ValueError(f"rewards without group_ids must be [P, G], got shape {tuple(rewards.shape)}")
            group_ids = torch.arange(rewards.shape[0]).repeat_interleave(rewards.shape[1])
        elif not isinstance(group_ids, torch.Tensor):  # e.g. prompt uids as strings
            first_seen: dict[Hashable, int] = {}
            group_ids = torch.tensor([first_seen.setdefault(g, len(first_seen)) for g in group_ids])
        self.rewards = rewards.reshape(-1) if rewards.is_floating_point() else rewards.reshape(-1).double()  # [B]
        if group_ids.numel() != self.rewards.numel():
            raise ValueError(f"{group_ids.numel()} group ids for {self.rewards.numel()} rewards")
        _, inverse, counts = torch.unique(group_ids.reshape(-1), return_inverse=True, return_counts=True)
        if bool((counts < 2).any()):  # one sample has no baseline: its std is undefined (verl silently uses 1)
            raise ValueError(f"every group needs >= 2 samples (G >= 2); group sizes: {counts.tolist()}")
        self.inverse = inverse.to(self.rewards.device)  # [B]
        self.counts = counts.to(self.rewards)  # [P]

    def sum(self, values: torch.Tensor) -> torch.Tensor:  # [B] -> [P]
        return values.new_zeros(len(self.counts)).index_add_(0, self.inverse, values)

    def mean(self) -> torch.Tensor:  # [P]
        return self.sum(self.rewards) / self.counts

    def std(self) -> torch.Tensor:  # [P], unbiased (n - 1) like verl's torch.std
        dev = self.rewards - self.mean()[self.inverse]
        return (self.sum(dev * dev) / (self.counts - 1)).sqrt()

    def out(self, advantages: torch.Tensor) -> torch.Tensor:  # [B] -> the rewards' shape
        return advantages.reshape(self.shape)


@register_advantage("grpo")
def grpo_advantage(rewards: torch.Tensor, group_ids: torch.Tensor | Sequence[Hashable] | None = None,
                   eps: float = 1e-6) -> torch.Tensor:
    """``(r - mean_g) / (std_g + eps)`` with the *unbiased* group std (n - 1), as verl's
    ``compute_grpo_outcome_advantage`` (``torch.std``), eps 1e-6. A group whose rewards are all
    equal gets 0: it carries no signal. rewards ``[P, G]`` or ``[B]`` + group_ids ``[B]``."""
    g = _Groups(rewards, group_ids)
    return g.out((g.rewards - g.mean()[g.inverse]) / (g.std()[g.inverse] + eps))


@register_advantage("none", "dr_grpo")
def mean_baseline_advantage(rewards: torch.Tensor, group_ids: torch.Tensor | Sequence[Hashable] | None = None,
                            eps: float = 1e-6) -> torch.Tensor:
    """``r - mean_g``, no std scaling (Dr. GRPO: dividing by std up-weights near-uniform groups)."""
    g = _Groups(rewards, group_ids)
    return g.out(g.rewards - g.mean()[g.inverse])


@register_advantage("rloo")
def rloo_advantage(rewards: torch.Tensor, group_ids: torch.Tensor | Sequence[Hashable] | None = None,
                   eps: float = 1e-6) -> torch.Tensor:
    """Leave-one-out: ``r_i - mean_{j != i} r_j = (n r_i - sum_g) / (n - 1)`` (verl's ``rloo``)."""
    g = _Groups(rewards, group_ids)
    n = g.counts[g.inverse]
    return g.out((n * g.rewards - g.sum(g.rewards)[g.inverse]) / (n - 1))


def zero_std_group_fraction(rewards: torch.Tensor,
                            group_ids: torch.Tensor | Sequence[Hashable] | None = None) -> float:
    """Share of groups whose G rewards are all equal (their advantage is 0: wasted samples).
    rewards ``[P, G]`` or ``[B]`` + group_ids ``[B]``."""
    g = _Groups(rewards, group_ids)
    high = g.rewards.new_full((len(g.counts),), float("-inf")).scatter_reduce(0, g.inverse, g.rewards, "amax")
    low = g.rewards.new_full((len(g.counts),), float("inf")).scatter_reduce(0, g.inverse, g.rewards, "amin")
    return float((high == low).float().mean())


# ---------------------------------------------------------------- KL estimators (Schulman, "Approximating KL")


@register_kl("k1")
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``logp - ref``: unbiased, high variance, can be negative per token. [B, L] -> [B, L]."""
    return logp - ref_logp


@register_kl("k2")
def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``0.5 (logp - ref)^2``: biased, low variance, its gradient is the KL's. [B, L] -> [B, L]."""
    return 0.5 * (logp - ref_logp).square()


@register_kl("k3", "low_var_kl")
def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """``exp(ref - logp) - (ref - logp) - 1`` (GRPO's and verl's ``low_var_kl``): unbiased, >= 0.
    As in verl, ``ref - logp`` is clamped to [-20, 20] before exp and the result to [-10, 10], so
    one token whose reference log-prob collapsed cannot dominate the loss. [B, L] -> [B, L]."""
    log_ratio = (ref_logp - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # [B, L]
    return (log_ratio.exp() - log_ratio - 1).clamp(-10.0, 10.0)


# ---------------------------------------------------------------- loss aggregation


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [B, L] over ``mask`` [B, L] (0 when nothing is valid)."""
    mask = mask.bool()
    return torch.where(mask, values, 0).sum() / mask.sum().clamp(min=1)


@register_loss_agg("token-mean")
def token_mean(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over every valid token of the batch: long completions weigh more (DAPO, verl's default)."""
    return masked_mean(loss, mask)


@register_loss_agg("seq-mean-token-mean")
def seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over tokens inside each sequence, then over the sequences that have any (original GRPO)."""
    mask = mask.bool()  # [B, L]
    tokens = mask.sum(-1)  # [B]
    per_seq = torch.where(mask, loss, 0).sum(-1) / tokens.clamp(min=1)  # [B]
    return masked_mean(per_seq, tokens > 0)


# ---------------------------------------------------------------- policy loss


@register_policy_loss("grpo_clip")
def grpo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                   clip_eps_low: float = 0.2, clip_eps_high: float = 0.2,
                   agg: str = "token-mean") -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate ``max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))`` per token,
    ``r = exp(logp - old_logp)``, aggregated by ``agg``.

    logp, old_logp, mask: [B, L]; advantages: [B] (one per sequence, broadcast to its tokens) or [B, L].
    Stats: ``clip_fraction`` (valid tokens where the clipped term is the one taken), ``ratio_mean``.
    """
    aggregate = get_loss_agg(agg)
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages  # [B, 1] or [B, L]
    ratio = (logp - old_logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO).exp()  # [B, L]
    unclipped = -adv * ratio  # [B, L]
    clipped = -adv * ratio.clamp(1.0 - clip_eps_low, 1.0 + clip_eps_high)  # [B, L]
    per_token = torch.maximum(unclipped, clipped)  # [B, L]: the pessimistic bound
    stats = {"clip_fraction": float(masked_mean((clipped > unclipped).float(), mask)),
             "ratio_mean": float(masked_mean(ratio.detach(), mask))}
    return aggregate(per_token, mask), stats


def grpo_objective(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
                   advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float | tuple[float, float] = 0.2,
                   kl_coef: float = 0.0, kl_name: str = "k3", agg: str = "token-mean",
                   policy_loss: str = "grpo_clip") -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss: ``policy_loss + kl_coef * agg(KL(logp, ref_logp))``.

    logp: [B, L] current policy (carries the gradient); old_logp: [B, L] the policy that sampled;
    ref_logp: [B, L] the reference (None only with ``kl_coef == 0``); advantages: [B]; mask: [B, L].
    ``clip_eps``: one eps, or ``(low, high)`` for asymmetric "clip-higher".
    Stats: ``loss``, ``pg_loss``, ``kl/mean`` (token mean of the KL estimate; 0.0 when there is no
    reference, i.e. not measured), ``clip_fraction``, ``ratio_mean``.
    """
    kl_fn, aggregate = get_kl(kl_name), get_loss_agg(agg)  # unknown names fail before any work
    if ref_logp is None and kl_coef != 0:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logp")
    low, high = clip_eps if isinstance(clip_eps, tuple) else (clip_eps, clip_eps)
    pg_loss, stats = get_policy_loss(policy_loss)(logp, old_logp, advantages, mask, low, high, agg)
    loss, kl_mean = pg_loss, 0.0
    if ref_logp is not None:
        kl = kl_fn(logp, ref_logp)  # [B, L]
        kl_mean = float(masked_mean(kl.detach(), mask))
        if kl_coef != 0:
            loss = pg_loss + kl_coef * aggregate(kl, mask)
    return loss, {**stats, "loss": float(loss.detach()), "pg_loss": float(pg_loss.detach()), "kl/mean": kl_mean}


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] in float32: logits [B, L, V], tokens [B, L] -> [B, L].
    ``logits[:, t]`` must already be the prediction of ``tokens[:, t]`` (shift before calling).
    Computed as ``logit[token] - logsumexp(logits)`` so no second [B, L, V] tensor is made; fp32
    because bf16 keeps ~3 significant digits: log-probs of a few nats would be off by ~1e-2, which the
    ratio ``exp(logp - old_logp)`` and the rollout-vs-learner mismatch would read as policy drift."""
    logits = logits.float()  # [B, L, V]
    picked = logits.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)  # [B, L]
    return picked - torch.logsumexp(logits, dim=-1)
