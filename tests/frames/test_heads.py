import math

import pytest
import torch

from framecall.frames.heads import BinaryFrameHead, PoissonFrameHead, make_head


def test_shapes_and_mask_expansion():
    head = PoissonFrameHead(hidden_size=16, subframes=4)
    states = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    scores, sub_mask = head(states, mask)
    assert scores.shape == (2, 20) and sub_mask.shape == (2, 20)
    assert sub_mask[0].tolist() == [True] * 12 + [False] * 8
    # sub-frames of token t come from token t's state only
    states2 = states.clone()
    states2[0, 2] += 1.0
    scores2, _ = head(states2, mask)
    changed = (scores2 - scores).abs().sum(0) > 0
    assert changed.nonzero().flatten().tolist() == [8, 9, 10, 11]


def test_poisson_bias_starts_near_minus_six():
    head = PoissonFrameHead(hidden_size=32)
    scores, _ = head(torch.zeros(1, 10, 32))
    assert torch.allclose(scores, torch.full_like(scores, -6.0))
    assert math.isclose(float(torch.exp(scores.detach()).sum()), 40 * math.exp(-6), rel_tol=1e-5)


def test_float32_output_for_bf16_states():
    head = BinaryFrameHead(hidden_size=8, subframes=2)
    scores, _ = head(torch.randn(1, 3, 8, dtype=torch.bfloat16))
    assert scores.dtype == torch.float32 and scores.shape == (1, 6)


def test_errors():
    with pytest.raises(ValueError, match=r"expected states \[B, T_tok, 8\]"):
        BinaryFrameHead(8)(torch.randn(2, 3, 9))
    with pytest.raises(ValueError, match="unknown head 'ctc'"):
        make_head("ctc", 8)


def test_init_options_bias_and_weights():
    torch.manual_seed(0)
    assert make_head("poisson", 64).proj.bias.tolist() == [-6.0] * 4
    assert make_head("binary", 64).proj.bias.tolist() == [0.0] * 4
    assert make_head("poisson", 64, bias=-6.9).proj.bias.tolist() == pytest.approx([-6.9] * 4)
    # scaled_normal: std 0.1 / sqrt(H) = 0.0125 for H = 64; torch_default: U(-1/8, 1/8), std 1/8/sqrt(3) = 0.072
    small = make_head("poisson", 64, weight_init="scaled_normal").proj.weight.detach()
    wide = make_head("poisson", 64, weight_init="torch_default").proj.weight.detach()
    assert 0.009 < float(small.std()) < 0.016 and 0.055 < float(wide.std()) < 0.09
    assert float(wide.abs().max()) <= 1 / 8
    with pytest.raises(ValueError, match="unknown head weight init 'xavier'"):
        make_head("binary", 8, weight_init="xavier")
