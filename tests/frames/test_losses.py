import math

import pytest
import torch

from framecall.frames.losses import FRAME_LOSSES, binary_frame_loss, get_frame_loss, poisson_nll

LOG = math.log


def _t(*rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def test_poisson_nll_hand_computed():
    """lam = [1, 2, 0.5] (log-intensities log 1, log 2, log 0.5); one event in frame 1.
    Lam(T) = 1 + 2 + 0.5 = 3.5.
    unconditional: -log 2 + 3.5                 = 2.80685
    conditional:   -log 2 + 1 * log 3.5         = 0.55962
    with frame 2 masked, Lam(T) = 3:
    unconditional: -log 2 + 3 = 2.30685; conditional: -log 2 + log 3 = log 1.5 = 0.40547
    """
    x = _t([LOG(1), LOG(2), LOG(0.5)])
    counts = _t([0, 1, 0])
    full = torch.ones(1, 3, dtype=torch.bool)
    assert poisson_nll(x, counts, full).item() == pytest.approx(-LOG(2) + 3.5)
    assert poisson_nll(x, counts, full, conditional=True).item() == pytest.approx(-LOG(2) + LOG(3.5))
    part = torch.tensor([[True, True, False]])
    assert poisson_nll(x, counts, part).item() == pytest.approx(-LOG(2) + 3.0)
    assert poisson_nll(x, counts, part, conditional=True).item() == pytest.approx(LOG(1.5))


def test_poisson_nll_two_events_same_frame_and_no_events():
    """Two events in frame 1 of lam = [1, 2, 0.5]:
    unconditional: -2 log 2 + 3.5 = 2.11371; conditional: -2 log 2 + 2 log 3.5 = 1.11923.
    No events: unconditional = Lam(T) = 3.5, conditional = 0."""
    x = _t([LOG(1), LOG(2), LOG(0.5)], [LOG(1), LOG(2), LOG(0.5)])
    counts = _t([0, 2, 0], [0, 0, 0])
    mask = torch.ones(2, 3, dtype=torch.bool)
    un = poisson_nll(x, counts, mask)
    co = poisson_nll(x, counts, mask, conditional=True)
    assert un.tolist() == pytest.approx([-2 * LOG(2) + 3.5, 3.5])
    assert co.tolist() == pytest.approx([-2 * LOG(2) + 2 * LOG(3.5), 0.0])


def test_binary_loss_hand_computed():
    """logits all 0 (p = 0.5), one positive of 4 frames: auto pos_weight = 3/1 = 3.
    sum = 3 * log 2 (positive) + 3 * log 2 (negatives) = 6 log 2; mean over 4 frames
    = 1.5 log 2 = 1.03972. pos_weight_scale = 2: (6 + 3) log 2 / 4 = 2.25 log 2.
    Fixed pos_weight = 1: 4 log 2 / 4 = log 2. Masking frame 3 (a negative): w = 2,
    (2 + 2) log 2 / 3."""
    logits = _t([0.0, 0, 0, 0])
    y = _t([0, 1, 0, 0])
    m = torch.ones(1, 4, dtype=torch.bool)
    assert binary_frame_loss(logits, y, m).item() == pytest.approx(1.5 * LOG(2))
    assert binary_frame_loss(logits, y, m, pos_weight_scale=2.0).item() == pytest.approx(2.25 * LOG(2))
    assert binary_frame_loss(logits, y, m, pos_weight=1.0).item() == pytest.approx(LOG(2))
    m3 = torch.tensor([[True, True, True, False]])
    assert binary_frame_loss(logits, y, m3).item() == pytest.approx(4 * LOG(2) / 3)
    with pytest.raises(ValueError, match="pos_weight"):
        binary_frame_loss(logits, y, m, pos_weight="balanced")


def test_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 7, dtype=torch.float64, requires_grad=True)
    counts = torch.tensor([[0, 1, 0, 0, 2, 0, 0], [1, 0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    for cond in (False, True):
        assert torch.autograd.gradcheck(lambda z: poisson_nll(z, counts, mask, conditional=cond), (x,))
    assert torch.autograd.gradcheck(lambda z: binary_frame_loss(z, counts, mask), (x,))


def test_registry_by_name():
    assert set(FRAME_LOSSES) == {"poisson", "poisson_conditional", "binary"}
    x, c, m = torch.zeros(1, 3), torch.tensor([[0.0, 1, 0]]), torch.ones(1, 3, dtype=torch.bool)
    assert get_frame_loss("poisson")(x, c, m).item() == pytest.approx(3.0)  # -0 + 3 * e^0
    assert get_frame_loss("poisson_conditional")(x, c, m).item() == pytest.approx(LOG(3))
    with pytest.raises(ValueError, match=r"unknown frame loss 'l2'; valid: \['binary', 'poisson', 'poisson_conditional'\]"):
        get_frame_loss("l2")


@pytest.mark.parametrize("name", sorted(FRAME_LOSSES))
def test_stable_at_extremes(name):
    """Log-intensities in [-50, 50], T = 30,000 sub-frames, n = 500: finite loss and grads."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(2, 30_000, generator=g) * 100 - 50).requires_grad_()
    counts = torch.zeros(2, 30_000)
    idx = torch.randint(0, 30_000, (500,), generator=g)
    counts[0].index_add_(0, idx, torch.ones(500))
    mask = torch.ones(2, 30_000, dtype=torch.bool)
    mask[1, 20_000:] = False
    loss = get_frame_loss(name)(x, counts, mask)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()
    # low-intensity extreme too
    y = torch.full((1, 30_000), -50.0, requires_grad=True)
    loss = get_frame_loss(name)(y, counts[:1], mask[:1])
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(y.grad).all()


def test_bf16_inputs_are_computed_in_float32():
    x = torch.zeros(1, 5, dtype=torch.bfloat16)
    out = poisson_nll(x, torch.zeros(1, 5), torch.ones(1, 5, dtype=torch.bool))
    assert out.dtype == torch.float32 and out.item() == pytest.approx(5.0)
