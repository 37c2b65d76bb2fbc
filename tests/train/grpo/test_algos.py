import math

import pytest
import torch

from framecall.train.grpo.algos import (
    ADVANTAGES,
    KL_ESTIMATORS,
    get_advantage,
    get_kl,
    get_loss_agg,
    get_policy_loss,
    grpo_clip_loss,
    grpo_objective,
    token_logprobs,
    zero_std_group_fraction,
)

E = math.exp
REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)


def test_grpo_advantage_hand_computed():
    """Group 0 = [1, 0, 0, 1]: mean 0.5, deviations +-0.5, unbiased var = 4 * 0.25 / 3 = 1/3,
    std = 0.5773503; advantage = +-0.5 / (0.5773503 + 1e-6) = +-0.8660239.
    Group 1 = [0.5] * 4: mean 0.5, std 0 -> 0 / (0 + 1e-6) = 0 (no signal, half of the groups)."""
    adv = get_advantage("grpo")(REWARDS)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert a == pytest.approx(0.8660239, abs=1e-7)
    assert adv.shape == (2, 4)
    assert adv[0].tolist() == pytest.approx([a, -a, -a, a], abs=1e-12)
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert zero_std_group_fraction(REWARDS) == 0.5


def test_mean_baseline_and_rloo_hand_computed():
    """dr_grpo / none: r - mean = [0.5, -0.5, -0.5, 0.5] and [0] * 4.
    rloo, group 0: 1 - (0 + 0 + 1) / 3 = 2/3; 0 - (1 + 0 + 1) / 3 = -2/3. Group 1: 0.5 - 0.5 = 0."""
    for name in ("none", "dr_grpo"):
        adv = get_advantage(name)(REWARDS)
        assert adv.tolist() == [[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]
    rloo = get_advantage("rloo")(REWARDS)
    assert rloo[0].tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3], abs=1e-12)
    assert rloo[1].tolist() == pytest.approx([0.0] * 4, abs=1e-12)


def test_flat_rewards_with_ragged_string_groups():
    """rewards [1, 0, 3, 1, 2] in groups a = [1, 0], b = [3, 1, 2].
    grpo a: mean 0.5, std sqrt(0.5) = 0.7071068 -> +-0.5 / 0.7071078 = +-0.7071058.
    grpo b: mean 2, std sqrt((1 + 1 + 0) / 2) = 1 -> [1, -1, 0] / (1 + 1e-6).
    rloo a: 1 - 0 = 1, 0 - 1 = -1; rloo b: 3 - 1.5 = 1.5, 1 - 2.5 = -1.5, 2 - 2 = 0."""
    rewards = torch.tensor([1.0, 0.0, 3.0, 1.0, 2.0], dtype=torch.float64)
    ids = ["a", "a", "b", "b", "b"]
    a = 0.5 / (math.sqrt(0.5) + 1e-6)
    b = 1 / (1 + 1e-6)
    assert get_advantage("grpo")(rewards, ids).tolist() == pytest.approx([a, -a, b, -b, 0.0], abs=1e-12)
    assert get_advantage("rloo")(rewards, ids).tolist() == pytest.approx([1, -1, 1.5, -1.5, 0], abs=1e-12)
    # the same groups as tensor ids, interleaved: results follow the samples, not the order
    order = [2, 0, 3, 1, 4]
    tensor_ids = torch.tensor([7, 7, 3, 3, 3])[order]
    assert get_advantage("grpo")(rewards[order], tensor_ids).tolist() == pytest.approx(
        [b, a, -b, -a, 0.0], abs=1e-12)
    assert zero_std_group_fraction(torch.tensor([1.0, 1.0, 0.1, 0.1, 0.1]), ids) == 1.0


def test_advantage_input_errors():
    with pytest.raises(ValueError, match="G >= 2"):
        get_advantage("grpo")(torch.tensor([[1.0], [0.0]]))
    with pytest.raises(ValueError, match=r"must be \[P, G\]"):
        get_advantage("grpo")(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="3 group ids for 2 rewards"):
        get_advantage("rloo")(torch.tensor([1.0, 0.0]), [0, 0, 1])


def test_kl_estimators_two_tokens_by_hand():
    """logp = [-1, -2], ref = [-0.5, -3]: d = ref - logp = [0.5, -1].
    k1 = logp - ref = [-0.5, 1]; k2 = 0.5 d^2 = [0.125, 0.5];
    k3 = e^d - d - 1 = [1.6487213 - 1.5, 0.3678794 + 1 - 1] = [0.1487213, 0.3678794].
    Clamps (verl): d = 30 -> 20 -> e^20 - 21 ~ 4.9e8 -> 10; d = -50 -> -20 -> 19.0000000 -> 10."""
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
    ref = torch.tensor([[-0.5, -3.0]], dtype=torch.float64)
    assert get_kl("k1")(logp, ref).tolist() == [[-0.5, 1.0]]
    assert get_kl("k2")(logp, ref).tolist() == [[0.125, 0.5]]
    k3 = get_kl("k3")(logp, ref)[0].tolist()
    assert k3 == pytest.approx([0.1487213, 0.3678794], abs=1e-7)
    assert k3 == pytest.approx([E(0.5) - 1.5, E(-1)], abs=1e-12)
    assert get_kl("low_var_kl") is get_kl("k3")
    far = get_kl("k3")(torch.tensor([[0.0, 0.0]]), torch.tensor([[30.0, -50.0]]))
    assert far.tolist() == [[10.0, 10.0]]


# logp - old_logp = [[0, 0.5, -0.1], [0.1, -0.2, 2.0 (masked)]], advantages [1, -0.5], eps 0.2
OLD = torch.full((2, 3), -3.0, dtype=torch.float64)
DELTA = torch.tensor([[0.0, 0.5, -0.1], [0.1, -0.2, 2.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
ADV = torch.tensor([1.0, -0.5], dtype=torch.float64)
ROW0 = [-1.0, -1.2, -E(-0.1)]  # per-token losses, see the docstring below
ROW1 = [0.5 * E(0.1), 0.5 * E(-0.2)]


def test_clipped_loss_hand_computed():
    """Per token max(-A r, -A clip(r, 0.8, 1.2)), r = exp(logp - old_logp):
    row 0, A = 1:    r = 1 -> -1;  r = e^0.5 = 1.6487213 -> max(-1.6487, -1.2) = -1.2 (clipped);
                     r = e^-0.1 = 0.9048374 (inside) -> -0.9048374.
    row 1, A = -0.5: r = e^0.1 = 1.1051709 -> 0.5525855; r = e^-0.2 = 0.8187308 (inside) -> 0.4093654;
                     token 3 masked (its r = e^2 would give 3.69: must not count).
    token-mean = (-1 - 1.2 - 0.9048374 + 0.5525855 + 0.4093654) / 5 = -2.1428866 / 5 = -0.4285773.
    seq-mean-token-mean = (-3.1048374 / 3 + 0.9619508 / 2) / 2 = (-1.0349458 + 0.4809754) / 2 = -0.2769852.
    clip_fraction = 1 / 5; ratio_mean = (1 + 1.6487213 + 0.9048374 + 1.1051709 + 0.8187308) / 5 = 1.0954921."""
    logp = (OLD + DELTA).requires_grad_(True)
    loss, stats = get_policy_loss("grpo_clip")(logp, OLD, ADV, MASK, 0.2, 0.2, "token-mean")
    assert loss.item() == pytest.approx(-0.4285773, abs=1e-6)
    assert loss.item() == pytest.approx((sum(ROW0) + sum(ROW1)) / 5, abs=1e-12)
    assert stats["clip_fraction"] == pytest.approx(0.2)
    assert stats["ratio_mean"] == pytest.approx(1.0954921, abs=1e-6)
    seq, _ = grpo_clip_loss(logp, OLD, ADV, MASK, agg="seq-mean-token-mean")
    assert seq.item() == pytest.approx(-0.2769852, abs=1e-6)
    assert seq.item() == pytest.approx((sum(ROW0) / 3 + sum(ROW1) / 2) / 2, abs=1e-12)
    # gradients: d(-A r)/dlogp = -A r / 5 on live tokens; 0 on the clipped and the masked token
    loss.backward()
    grad = logp.grad.tolist()
    assert grad[0] == pytest.approx([-0.2, 0.0, -E(-0.1) / 5], abs=1e-12)
    assert grad[1] == pytest.approx([0.5 * E(0.1) / 5, 0.5 * E(-0.2) / 5, 0.0], abs=1e-12)


def test_agg_modes_weigh_sequences_differently():
    """Losses [[1, 1, 1, 1], [4, pad, pad, pad]]: token-mean = 8 / 5 = 1.6 (long rows weigh more);
    seq-mean-token-mean = (1 + 4) / 2 = 2.5. A fully masked row is left out of the sequence mean;
    an all-masked batch gives 0, not NaN."""
    loss = torch.tensor([[1.0, 1, 1, 1], [4, 9, 9, 9], [7, 7, 7, 7]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert get_loss_agg("token-mean")(loss, mask).item() == pytest.approx(1.6)
    assert get_loss_agg("seq-mean-token-mean")(loss, mask).item() == pytest.approx(2.5)
    for mode in ("token-mean", "seq-mean-token-mean"):
        assert get_loss_agg(mode)(loss, torch.zeros_like(mask)).item() == 0.0


def test_grpo_objective_with_k3_kl():
    """Same batch as the clipped-loss test; ref - logp = 0.5 on token (0, 0), 0 on the others,
    -37 on the masked token (clamped to -20, then to 10: excluded by the mask anyway).
    k3(0.5) = 0.1487213, so kl/mean = 0.1487213 / 5 = 0.0297443.
    token-mean: loss = -0.4285773 + 0.1 * 0.0297443 = -0.4256029.
    seq-mean-token-mean: KL term = (0.1487213 / 3 + 0) / 2 = 0.0247869,
    loss = -0.2769852 + 0.1 * 0.0247869 = -0.2745065."""
    logp = OLD + DELTA
    ref = logp + torch.tensor([[0.5, 0, 0], [0, 0, -37.0]], dtype=torch.float64)
    loss, stats = grpo_objective(logp, OLD, ref, ADV, MASK, clip_eps=0.2, kl_coef=0.1, kl_name="k3")
    assert stats["kl/mean"] == pytest.approx(0.0297443, abs=1e-7)
    assert loss.item() == pytest.approx(-0.4256029, abs=1e-6)
    assert stats["pg_loss"] == pytest.approx(-0.4285773, abs=1e-6)
    assert stats["loss"] == pytest.approx(loss.item())
    assert stats["clip_fraction"] == pytest.approx(0.2)
    seq, _ = grpo_objective(logp, OLD, ref, ADV, MASK, 0.2, 0.1, "k3", "seq-mean-token-mean")
    assert seq.item() == pytest.approx(-0.2745065, abs=1e-6)
    # no reference: KL not measured, pure policy loss
    bare, stats = grpo_objective(logp, OLD, None, ADV, MASK)
    assert bare.item() == pytest.approx(-0.4285773, abs=1e-6) and stats["kl/mean"] == 0.0


def test_asymmetric_clip():
    """clip_eps = (0.2, 0.7): e^0.5 = 1.6487 < 1.7 is no longer clipped; row 0 token 1 gives -1.6487213
    and the token-mean becomes (-2.1428866 - 1.6487213 + 1.2) / 5 = -0.5183216."""
    loss, stats = grpo_objective(OLD + DELTA, OLD, None, ADV, MASK, clip_eps=(0.2, 0.7))
    assert loss.item() == pytest.approx(-0.5183216, abs=1e-6)
    assert stats["clip_fraction"] == 0.0


def test_token_logprobs_hand_example():
    """Position 0: logits [0, ln 2, ln 3] -> softmax [1, 2, 3] / 6; token 2 -> ln(3/6) = -0.6931472.
    Position 1: logits [1, 1, 1] -> uniform; token 0 -> ln(1/3) = -1.0986123. bf16 in, fp32 out."""
    logits = torch.tensor([[[0.0, math.log(2), math.log(3)], [1.0, 1.0, 1.0]]])
    tokens = torch.tensor([[2, 0]])
    out = token_logprobs(logits, tokens)
    assert out.dtype == torch.float32 and out.shape == (1, 2)
    assert out[0].tolist() == pytest.approx([math.log(0.5), math.log(1 / 3)], abs=1e-6)
    assert token_logprobs(logits.bfloat16(), tokens).dtype == torch.float32
    logits = torch.randn(2, 5, 11)
    tokens = torch.randint(0, 11, (2, 5))
    expected = logits.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, tokens), expected, atol=1e-6)


def test_unknown_names_list_the_valid_ones():
    assert set(ADVANTAGES) == {"grpo", "none", "dr_grpo", "rloo"}
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3", "low_var_kl"}
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'ppo'; valid: \['dr_grpo', 'grpo', 'none', "
                                         r"'rloo'\]"):
        get_advantage("ppo")
    with pytest.raises(ValueError, match=r"unknown KL estimator 'k4'; valid: \['k1', 'k2', 'k3', 'low_var_kl'\]"):
        get_kl("k4")
    with pytest.raises(ValueError, match=r"unknown policy loss 'ppo'; valid: \['grpo_clip'\]"):
        get_policy_loss("ppo")
    with pytest.raises(ValueError, match=r"unknown loss aggregation 'sum'; valid: \['seq-mean-token-mean', "
                                         r"'token-mean'\]"):
        grpo_objective(OLD, OLD, None, ADV, MASK, agg="sum")
    with pytest.raises(ValueError, match="unknown KL estimator 'kl'"):
        grpo_objective(OLD, OLD, OLD, ADV, MASK, kl_name="kl")
    with pytest.raises(ValueError, match="kl_coef=0.04 needs ref_logp"):
        grpo_objective(OLD, OLD, None, ADV, MASK, kl_coef=0.04)
