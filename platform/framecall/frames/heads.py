"""Frame heads: decoder audio states -> S scores per 40 ms audio token.

Both heads map ``states`` [B, T_tok, H] (final-layer hidden states at the audio
positions) to ``[B, T_tok * S]`` on the sub-frame axis, in float32 whatever the
backbone's dtype (the losses need it), and expand the token mask the same way.
"""

from __future__ import annotations

import torch
from torch import nn


WEIGHT_INITS = ("scaled_normal", "torch_default")
"""scaled_normal: N(0, (0.1 / sqrt(H))^2), scores start near the bias; torch_default: nn.Linear's own
init (Kaiming-uniform, U(-1/sqrt(H), 1/sqrt(H))), what the authors' head keeps."""


class _SubframeHead(nn.Module):
    def __init__(self, hidden_size: int, subframes: int, bias_init: float,
                 weight_init: str = "scaled_normal") -> None:
        super().__init__()
        if hidden_size < 1 or subframes < 1:
            raise ValueError(f"need hidden_size >= 1 and subframes >= 1, got {hidden_size}, {subframes}")
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"unknown head weight init {weight_init!r}; valid: {list(WEIGHT_INITS)}")
        self.hidden_size = hidden_size
        self.subframes = subframes
        self.bias_init = bias_init
        self.proj = nn.Linear(hidden_size, subframes)
        if weight_init == "scaled_normal":
            nn.init.normal_(self.proj.weight, std=hidden_size**-0.5 * 0.1)
        nn.init.constant_(self.proj.bias, bias_init)

    def forward(
        self, states: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """states [B, T_tok, H], token_mask [B, T_tok] bool -> (scores [B, T_tok*S], mask [B, T_tok*S])."""
        if states.dim() != 3 or states.shape[-1] != self.hidden_size:
            raise ValueError(f"expected states [B, T_tok, {self.hidden_size}], got {tuple(states.shape)}")
        bsz, t_tok, _ = states.shape
        with torch.autocast(device_type=states.device.type, enabled=False):
            scores = self.proj(states.float()).reshape(bsz, t_tok * self.subframes)  # [B, T]
        if token_mask is None:
            token_mask = torch.ones(bsz, t_tok, dtype=torch.bool, device=states.device)
        mask = token_mask.bool().repeat_interleave(self.subframes, dim=1)  # [B, T]
        return scores, mask


class BinaryFrameHead(_SubframeHead):
    """Per-sub-frame logits of "an event starts here" (class-reweighted BCE)."""

    def __init__(self, hidden_size: int, subframes: int = 4, bias_init: float = 0.0,
                 weight_init: str = "scaled_normal") -> None:
        super().__init__(hidden_size, subframes, bias_init, weight_init)


class PoissonFrameHead(_SubframeHead):
    """Per-sub-frame log-intensity of an inhomogeneous Poisson process.

    ``bias_init=-6`` starts near exp(-6) ~ 0.0025 events per sub-frame, as the paper's
    code does: the expected count over a few hundred sub-frames starts near 1 (their
    LibriCount configs use -6.9, exp(-6.9) ~ 0.001).
    """

    def __init__(self, hidden_size: int, subframes: int = 4, bias_init: float = -6.0,
                 weight_init: str = "scaled_normal") -> None:
        super().__init__(hidden_size, subframes, bias_init, weight_init)


HEADS = {"binary": BinaryFrameHead, "poisson": PoissonFrameHead}


DEFAULT_BIAS = {"binary": 0.0, "poisson": -6.0}


def make_head(kind: str, hidden_size: int, subframes: int = 4, bias: float | None = None,
              weight_init: str = "scaled_normal") -> _SubframeHead:
    """``bias``: the initial bias (None: -6 for Poisson, 0 for binary); ``weight_init``: see WEIGHT_INITS."""
    try:
        cls = HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown head {kind!r}; valid: {sorted(HEADS)}") from None
    return cls(hidden_size, subframes, DEFAULT_BIAS[kind] if bias is None else bias, weight_init)
