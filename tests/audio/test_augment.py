"""Training augmentation changes the audio as intended, keeps labels true, and is deterministic per seed."""

import numpy as np
import pytest
import torch

from framecall.audio.augment import (AugmentConfig, SpecAugmentConfig, add_reverb, add_white_noise,
                                     augment_waveform, change_speed, row_rng, spec_augment)
from framecall.config import ConfigError, build_config

SR = 16000


def _burst(onset_s=0.5, length_s=0.2, total_s=2.0, seed=0):
    """Silence, a noise burst at ``onset_s``, silence: float32 [total_s * SR]."""
    x = np.zeros(int(total_s * SR), np.float32)
    i, n = int(onset_s * SR), int(length_s * SR)
    x[i:i + n] = np.random.default_rng(seed).standard_normal(n).astype(np.float32) * 0.3
    return x


def _first_loud(x, threshold=0.05):
    return int(np.argmax(np.abs(x) > threshold))


def _band_energy(x, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(freqs >= lo) & (freqs < hi)].sum())


def test_noise_is_added_at_the_requested_snr():
    x = np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR).astype(np.float32)
    for snr in (0.0, 10.0, 30.0):
        y = add_white_noise(x, snr, np.random.default_rng(1))
        measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
        assert measured == pytest.approx(snr, abs=0.2)


def test_speed_changes_length_and_event_times_scale():
    x = _burst(onset_s=1.0)
    for factor in (0.9, 1.1):
        y = change_speed(x, SR, factor)
        assert y.size == pytest.approx(x.size / factor, abs=2)
        # the burst starts where the scaled label says (within 1 ms)
        assert _first_loud(y) / SR == pytest.approx(1.0 / factor, abs=1e-3)
    cfg = AugmentConfig(speed=(1.2, 1.2), probability=1.0)
    y, scale, applied = augment_waveform(x, SR, cfg, np.random.default_rng(0))
    assert applied == {"speed": 1.2} and scale == pytest.approx(1 / 1.2)
    assert _first_loud(y) / SR == pytest.approx(1.0 * scale, abs=1e-3)


def test_bandlimit_removes_high_frequencies_without_moving_onsets():
    x = _burst()
    cfg = AugmentConfig(bandlimit_hz=(2000.0, 2000.0), probability=1.0)
    y, scale, _ = augment_waveform(x, SR, cfg, np.random.default_rng(0))
    assert scale == 1.0 and y.size == x.size
    # 36 dB/octave: far above the cutoff almost nothing is left, below it almost everything
    assert _band_energy(y, 4000, 8000) < 1e-3 * _band_energy(x, 4000, 8000)
    assert _band_energy(y, 0, 1000) > 0.8 * _band_energy(x, 0, 1000)
    assert abs(_first_loud(y, 0.02) - _first_loud(x, 0.02)) <= 16  # zero phase: within 1 ms


def test_reverb_lengthens_the_decay_and_keeps_the_onset():
    x = _burst(onset_s=0.5, length_s=0.2)
    end = int(0.7 * SR)
    y = add_reverb(x, SR, 0.6, np.random.default_rng(3))
    assert y.size == x.size
    tail = slice(end + int(0.05 * SR), end + int(0.3 * SR))  # 50-300 ms after the burst stops
    assert np.abs(x[tail]).max() == 0.0 and np.sqrt(np.mean(y[tail] ** 2)) > 1e-3
    longer = add_reverb(x, SR, 1.2, np.random.default_rng(3))
    late = slice(end + int(0.3 * SR), end + int(0.6 * SR))
    assert np.mean(longer[late] ** 2) > np.mean(y[late] ** 2)  # a longer RT60 rings longer
    assert abs(_first_loud(y, 0.02) - _first_loud(x, 0.02)) <= 16  # direct path at lag 0


def test_pitch_shift_moves_the_frequency_not_the_length():
    x = np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32) * 0.5
    y, scale, applied = augment_waveform(x, SR, AugmentConfig(pitch_semitones=(12.0, 12.0), probability=1.0),
                                         np.random.default_rng(0))
    assert scale == 1.0 and y.size == x.size and applied == {"pitch_semitones": 12.0}
    mid = slice(SR // 4, 3 * SR // 4)
    peak_hz = np.fft.rfftfreq(SR // 2, 1 / SR)[np.argmax(np.abs(np.fft.rfft(y[mid])))]
    assert peak_hz == pytest.approx(880, abs=10)


def test_deterministic_per_seed_and_off_by_default():
    x = _burst()
    cfg = AugmentConfig(speed=(0.9, 1.1), pitch_semitones=(-2, 2), noise_snr_db=(10, 30), reverb_rt60_s=(0.2, 0.5),
                        bandlimit_hz=(2000, 4000), probability=1.0)
    a = augment_waveform(x, SR, cfg, row_rng(0, "item-1"))
    b = augment_waveform(x, SR, cfg, row_rng(0, "item-1"))
    c = augment_waveform(x, SR, cfg, row_rng(1, "item-1"))
    d = augment_waveform(x, SR, cfg, row_rng(0, "item-1", pass_no=1))
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    assert set(a[2]) == {"speed", "pitch_semitones", "noise_snr_db", "reverb_rt60_s", "bandlimit_hz"}
    assert a[2] != c[2] and a[2] != d[2]  # another seed or another epoch's pass draws afresh
    off = AugmentConfig()
    assert not off.waveform and off.enabled == [] and not off.specaugment.enabled
    y, scale, applied = augment_waveform(x, SR, off, row_rng(0, "item-1"))
    assert np.array_equal(y, x) and scale == 1.0 and applied == {}
    never = AugmentConfig(noise_snr_db=(10, 10), probability=0.0)
    assert augment_waveform(x, SR, never, row_rng(0, "x"))[2] == {}


def test_spec_augment_masks_inside_valid_frames_only():
    feats = torch.randn(2, 16, 50)
    mask = torch.zeros(2, 50, dtype=torch.bool)
    mask[0, :50], mask[1, :30] = True, True
    cfg = SpecAugmentConfig(freq_masks=2, freq_width=4, time_masks=2, time_width=6)
    a = spec_augment(feats, mask, cfg, torch.Generator().manual_seed(0))
    b = spec_augment(feats, mask, cfg, torch.Generator().manual_seed(0))
    c = spec_augment(feats, mask, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[1, :, 30:], feats[1, :, 30:])  # padding untouched
    changed = a != feats
    assert changed.any()
    # at most 2 x 4 mel rows and 2 x 6 frames per item are masked
    for i in range(2):
        rows = changed[i].all(dim=1).sum()
        cols = changed[i].all(dim=0).sum()
        assert rows <= 8 and cols <= 12
    assert torch.equal(spec_augment(feats, mask, SpecAugmentConfig(), torch.Generator()), feats)


def test_bad_ranges_are_refused_naming_the_field():
    from framecall.train.config import TrainJobConfig

    with pytest.raises(ConfigError, match="data.augment.speed"):
        build_config(TrainJobConfig, overrides=["data.augment.speed=[1.1,0.9]"])
    with pytest.raises(ConfigError, match="data.augment.probability"):
        build_config(TrainJobConfig, overrides=["data.augment.probability=2"])
    cfg = build_config(TrainJobConfig, overrides=["data.augment.noise_snr_db=[10,20]",
                                                  "data.augment.specaugment.time_masks=2"])
    assert cfg.data.augment.noise_snr_db == (10.0, 20.0) and cfg.data.augment.enabled == ["noise_snr_db",
                                                                                        "specaugment"]


def test_training_split_only_and_times_follow_speed(ray_session, tmp_path):
    """prepare_datasets augments the training split (fresh features, scaled times), never validation."""
    from framecall.data.shards import read_manifest
    from framecall.data.synthetic import SynthConfig, ensure_synthetic
    from framecall.train.config import TrainJobConfig
    from framecall.train.runner import prepare_datasets

    data = ensure_synthetic(tmp_path / "d", SynthConfig(task="events", num=24, seed=3,
                                                        splits={"train": 0.5, "val": 0.5}), True)

    def rows(overrides):
        # features in the pipeline, to compare them; the worker mode's waveforms get the same augmentation
        # (tests/data/test_worker_featurize.py)
        cfg = build_config(TrainJobConfig, overrides=[f"data.data_dir={data}", "data.featurize=pipeline", *overrides])
        ds = prepare_datasets(cfg, [data], [read_manifest(data)])
        return {n: {r["id"]: r for r in d.take_all()} for n, d in ds.items()}

    plain = rows([])
    aug = rows(["data.augment.speed=[1.25,1.25]", "data.augment.probability=1.0"])
    assert plain["val"].keys() == aug["val"].keys() and plain["train"].keys() == aug["train"].keys()
    for i, r in plain["val"].items():
        assert aug["val"][i]["features"] == r["features"] and list(aug["val"][i]["event_times_s"]) == \
            list(r["event_times_s"])
    for i, r in plain["train"].items():
        a = aug["train"][i]
        assert a["num_frames"] < r["num_frames"]  # 1.25x faster: shorter
        assert list(a["event_times_s"]) == pytest.approx([t / 1.25 for t in r["event_times_s"]], abs=1e-6)
        assert a["duration_s"] == pytest.approx(r["duration_s"] / 1.25, abs=1e-3)
