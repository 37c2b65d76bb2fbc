"""Batched decoders over a padded batch with masks equal the per-item decoders on each row."""

import pytest
import torch

from framecall.frames.decoding import (DECODER_SPECS, decode, decode_batch, posterior_modes_batch,
                                       smoothed_posterior_modes_batch, topn_nms_batch)

UNIT_S = 0.01


def padded_batch(seed: int, rows: int = 12, t_max: int = 400):
    """Peaky log-intensities of random lengths (1 .. t_max; padding filled with junk that must not
    matter), with ties (a flat row) and counts 0, 1, 2, many and more than the row has frames."""
    g = torch.Generator().manual_seed(seed)
    lengths = [1, 7, t_max, *torch.randint(2, t_max, (rows - 3,), generator=g).tolist()]
    scores = torch.full((rows, t_max), 50.0)  # junk past each row's end: a leak would win every argmax
    for b, length in enumerate(lengths):
        row = -8 + 0.3 * torch.randn(length, generator=g)
        row[torch.randperm(length, generator=g)[: max(1, length // 20)]] += 8 * torch.rand(1, generator=g)
        scores[b, :length] = row
    scores[4, : lengths[4]] = -3.0  # flat: ties everywhere
    mask = torch.arange(t_max)[None, :] < torch.tensor(lengths)[:, None]
    counts = [1, 3, 25, 0, 2, 1, *torch.randint(1, 30, (rows - 6,), generator=g).tolist()]
    counts[7] = lengths[7] + 5  # more events than frames
    return scores, mask, counts, lengths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topn_nms_batch_equals_per_item(seed):
    scores, mask, counts, lengths = padded_batch(seed)
    for sep in (0, 3):
        batched = topn_nms_batch(scores, counts, mask, min_separation=sep)
        for b, length in enumerate(lengths):
            single = decode("topn_nms", scores[b, :length], counts[b], min_separation=sep)
            assert torch.equal(batched[b], single), (b, sep)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_posterior_modes_batch_equal_per_item(seed):
    scores, mask, counts, lengths = padded_batch(seed)
    plain = posterior_modes_batch(scores, counts, mask)
    for tolerance in (0.02, 0.04):
        smoothed = smoothed_posterior_modes_batch(scores, counts, mask, tolerance_s=tolerance, unit_s=UNIT_S)
        name = "smoothed_posterior_mode" if tolerance == 0.02 else "smoothed_posterior_mode_40ms"
        for b, length in enumerate(lengths):
            expected = decode(name, scores[b, :length], counts[b], unit_s=UNIT_S)
            assert smoothed[b].shape == expected.shape
            assert torch.allclose(smoothed[b], expected, rtol=0, atol=1e-9), (b, tolerance)
    for b, length in enumerate(lengths):
        expected = decode("posterior_mode", scores[b, :length], counts[b])
        assert torch.allclose(plain[b], expected, rtol=0, atol=1e-9), b


@pytest.mark.parametrize("name", sorted(DECODER_SPECS))
def test_decode_batch_equals_decode_for_every_decoder(name):
    scores, mask, counts, lengths = padded_batch(3, rows=8, t_max=120)
    head = "poisson" if "poisson" in DECODER_SPECS[name].heads else "binary"
    for n in (counts, [None] * len(counts)):
        batched = decode_batch(name, scores, mask, n, head=head, unit_s=UNIT_S)
        for b, length in enumerate(lengths):
            expected = decode(name, scores[b, :length], n[b], head=head, unit_s=UNIT_S)
            assert torch.allclose(batched[b], expected, rtol=0, atol=1e-9), (name, b)


def test_bad_batches_name_the_row():
    scores, mask, counts, _ = padded_batch(0, rows=8, t_max=50)
    holes = mask.clone()
    holes[2, 0] = False
    with pytest.raises(ValueError, match="row 2: the mask must be a non-empty prefix"):
        topn_nms_batch(scores, counts, holes)
    scores[3, 0] = float("nan")
    with pytest.raises(ValueError, match="row 3: scores contain NaN"):
        posterior_modes_batch(scores, counts, mask)
    with pytest.raises(ValueError, match="expected scores"):
        topn_nms_batch(scores, counts[:2], mask)


@pytest.mark.parametrize("name", ["topn_nms", "posterior_mode", "smoothed_posterior_mode"])
def test_decode_curves_of_different_lengths_equal_decode_of_each(name):
    """What evaluation and FrameLocalizer call: curves [T_b] of their own lengths, a count each (None:
    estimated from the curve, per row)."""
    from framecall.frames.decoding import decode_curves

    scores, _, counts, lengths = padded_batch(5)
    curves = [scores[b, :length] for b, length in enumerate(lengths)]
    for given in (counts, [None] * len(counts)):
        out = decode_curves(name, curves, given, unit_s=UNIT_S)
        for b, curve in enumerate(curves):
            assert torch.allclose(out[b], decode(name, curve, given[b], unit_s=UNIT_S), rtol=0, atol=1e-9), b
    assert decode_curves(name, [], []) == []
