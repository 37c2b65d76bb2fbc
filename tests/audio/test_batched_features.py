"""log_mel_batch (a padded batch in torch) against the per-clip WhisperFeatureExtractor features.

Run as a script to print the max abs differences BENCHMARKS.md states:
``.venv/bin/python tests/audio/test_batched_features.py``.
"""

import numpy as np
import pytest
import torch

from framecall.audio.features import FeatureParams, _extractor, log_mel, log_mel_batch, pad_waveforms
from framecall.audio.io import AudioTooShortError

SR = 16000


def synthetic_clips(count: int = 100, seed: int = 0) -> list[np.ndarray]:
    """``count`` clips of 0.1-5 s: noise, tones, chirps and amplitude-modulated noise at gains 1e-4..0.9."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(count):
        n = int(rng.uniform(0.1, 5.0) * SR)
        t = np.arange(n) / SR
        kind = i % 4
        if kind == 0:
            x = rng.standard_normal(n)
        elif kind == 1:
            x = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 7500, 3))
        elif kind == 2:
            x = np.sin(2 * np.pi * (100 + 3000 * t / t[-1]) * t)
        else:
            x = rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
        gain = 10 ** rng.uniform(-4, np.log10(0.9))
        clips.append((gain * x / max(np.abs(x).max(), 1e-9)).astype(np.float32))
    return clips


def edge_clips() -> dict[str, np.ndarray]:
    """Silence, a clipped square wave at +-1, 0.1 s and 30 s of noise."""
    rng = np.random.default_rng(1)
    square = np.sign(np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR))
    return {"silence": np.zeros(SR, np.float32), "clipping": np.clip(3 * square, -1, 1).astype(np.float32),
            "0.1 s": (0.3 * rng.standard_normal(SR // 10)).astype(np.float32),
            "30 s": (0.1 * rng.standard_normal(30 * SR)).astype(np.float32)}


def numpy_path(clip: np.ndarray, params: FeatureParams) -> np.ndarray:
    """The extractor's numpy featurizer on the clip alone (what it runs when torch is absent)."""
    return _extractor(params)._np_extract_fbank_features(clip[None], "cpu")[0].astype(np.float32)


def max_differences(clips: list[np.ndarray], params: FeatureParams = FeatureParams()) -> tuple[float, float, float]:
    """All clips as ONE padded batch -> max abs differences (batch vs log_mel per clip, batch vs the numpy
    path per clip, log_mel vs the numpy path); checks each row's frame count and zero padding."""
    samples, lengths = pad_waveforms(clips)
    features, mask = log_mel_batch(samples, lengths, params)
    vs_log_mel = vs_numpy = current_vs_numpy = 0.0
    for b, clip in enumerate(clips):
        frames = int(mask[b].sum())
        assert mask[b, :frames].all(), f"row {b}: mask not a prefix"
        ours = features[b, :, :frames].numpy()
        reference = log_mel(clip, params)
        assert ours.shape == reference.shape, f"row {b}: {ours.shape} vs {reference.shape}"
        assert not features[b, :, frames:].any(), f"row {b}: padding frames not zero"
        vs_log_mel = max(vs_log_mel, float(np.abs(ours - reference).max()))
        if params.pad_to_seconds is None:
            reference_np = numpy_path(clip, params)
            vs_numpy = max(vs_numpy, float(np.abs(ours - reference_np).max()))
            current_vs_numpy = max(current_vs_numpy, float(np.abs(reference - reference_np).max()))
    return vs_log_mel, vs_numpy, current_vs_numpy


def check_close(vs_log_mel: float, vs_numpy: float, current_vs_numpy: float) -> None:
    """Equal to today's features (float32 rounding), and no farther from the float64 numpy path than they are."""
    assert vs_log_mel <= 1e-5
    assert vs_numpy <= max(current_vs_numpy, 1e-6) + 1e-5
    assert vs_numpy <= 5e-4


def test_100_synthetic_clips_in_one_batch_equal_the_per_clip_features():
    check_close(*max_differences(synthetic_clips()))


def test_edge_cases_silence_clipping_short_and_30_s():
    clips = edge_clips()
    check_close(*max_differences(list(clips.values())))
    samples, lengths = pad_waveforms(list(clips.values()))
    features, mask = log_mel_batch(samples, lengths)
    assert mask.sum(1).tolist() == [100, 200, 10, 3000]
    # silence floors at log10(1e-10) = -10 -> (-10 + 4) / 4 = -1.5; the 30 s row's max - 8 floor is its own
    assert torch.all(features[0, :, :100] == -1.5)


def test_a_clip_alone_and_padded_next_to_a_long_loud_one_get_the_same_features():
    quiet = synthetic_clips(1, seed=5)[0] * 1e-3
    loud = np.ones(3 * SR, np.float32) * 0.9
    alone, _ = log_mel_batch(*pad_waveforms([quiet]))
    together, mask = log_mel_batch(*pad_waveforms([loud, quiet]))
    frames = int(mask[1].sum())
    assert frames == alone.shape[2]
    assert torch.equal(together[1, :, :frames], alone[0])


def test_padded_to_30_s_like_qwen2_audio():
    params = FeatureParams(pad_to_seconds=30.0)
    vs_log_mel, _, _ = max_differences(synthetic_clips(6, seed=2), params)
    assert vs_log_mel <= 1e-5


def test_a_too_short_clip_is_named():
    clips = [np.zeros(SR, np.float32), np.zeros(100, np.float32)]
    with pytest.raises(AudioTooShortError, match="upload.wav"):
        log_mel_batch(*pad_waveforms(clips), sources=["a.wav", "upload.wav"])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"samples \[B, S\]"):
        log_mel_batch(torch.zeros(SR), torch.tensor([SR]))
    with pytest.raises(ValueError, match="empty batch"):
        pad_waveforms([])


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name, clips in [("100 synthetic clips", synthetic_clips()), ("edge cases", list(edge_clips().values()))]:
        print(f"{name}: max abs diff, batch vs log_mel %.3g, batch vs numpy path %.3g, log_mel vs numpy path %.3g"
              % max_differences(clips))
