"""Training-time augmentation: waveform transforms (Ray Data stage) and SpecAugment (worker).

Every augmentation is off by default and configured by a range to draw from (``data.augment``
in the training config)::

    data.augment.speed=[0.9,1.1]            speed perturbation (tempo and pitch, Kaldi style)
    data.augment.pitch_semitones=[-2,2]     pitch shift, duration kept (audiomentations)
    data.augment.noise_snr_db=[10,30]       white noise at an SNR in dB (audiomentations)
    data.augment.reverb_rt60_s=[0.2,0.6]    a simulated shoebox room (pyroomacoustics)
    data.augment.bandlimit_hz=[2000,4000]   zero-phase low-pass at a cutoff (audiomentations)
    data.augment.specaugment.time_masks=2   log-mel time/frequency masks on the worker

Times must stay labels: speed scales every event time by ``1 / factor`` (returned as the
time scale); reverberation is aligned on the room's direct path and the low-pass filter is
zero-phase, so neither moves an onset. The waveform ones run on the training split only
(``data.pipeline`` applies them where ``PipelineConfig.augment`` is set, which
``train.runner.prepare_datasets`` does for the training split alone).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np


def _check_range(name: str, value: tuple[float, float] | None, lo: float, hi: float) -> None:
    if value is None:
        return
    a, b = value
    if not (lo <= a <= b <= hi):
        raise ValueError(f"data.augment.{name} must be [a, b] with {lo} <= a <= b <= {hi}, got {list(value)}")


@dataclass
class SpecAugmentConfig:
    """SpecAugment-style masking of the log-mel on the training worker (after the feature cache)."""

    freq_masks: int = 0
    """Frequency masks per item (0: off)."""
    freq_width: int = 8
    """Widest frequency mask, in mel bins."""
    time_masks: int = 0
    """Time masks per item (0: off)."""
    time_width: int = 10
    """Widest time mask, in mel frames (10 ms each for Whisper features)."""

    @property
    def enabled(self) -> bool:
        return self.freq_masks > 0 or self.time_masks > 0

    def __post_init__(self) -> None:
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.augment.specaugment.{name} must be >= 0, got {getattr(self, name)}")


WAVEFORM_AUGMENTATIONS = ("speed", "pitch_semitones", "noise_snr_db", "reverb_rt60_s", "bandlimit_hz")


@dataclass
class AugmentConfig:
    """Which augmentations run (each off unless its range is set) and how often."""

    speed: tuple[float, float] | None = None
    """Speed factor range, e.g. [0.9, 1.1]; event times are divided by the factor."""
    pitch_semitones: tuple[float, float] | None = None
    """Pitch shift range in semitones, duration unchanged."""
    noise_snr_db: tuple[float, float] | None = None
    """White-noise SNR range in dB (signal power over the whole clip)."""
    reverb_rt60_s: tuple[float, float] | None = None
    """Target RT60 range of a random shoebox room, in seconds."""
    bandlimit_hz: tuple[float, float] | None = None
    """Low-pass cutoff range in Hz (telephone-like band-limiting)."""
    probability: float = 0.5
    """Each enabled waveform augmentation is applied to a row with this probability."""
    seed: int = 0
    """With the row id and the row's pass number, fixes every draw."""
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)

    def __post_init__(self) -> None:
        _check_range("speed", self.speed, 0.5, 2.0)
        _check_range("pitch_semitones", self.pitch_semitones, -12.0, 12.0)
        _check_range("noise_snr_db", self.noise_snr_db, -10.0, 80.0)
        _check_range("reverb_rt60_s", self.reverb_rt60_s, 0.05, 2.0)
        _check_range("bandlimit_hz", self.bandlimit_hz, 300.0, 7900.0)
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"data.augment.probability must be in [0, 1], got {self.probability}")

    @property
    def waveform(self) -> bool:
        """True when any waveform augmentation is on (then the training features cannot be cached)."""
        return any(getattr(self, name) is not None for name in WAVEFORM_AUGMENTATIONS)

    @property
    def enabled(self) -> list[str]:
        """Names of the augmentations that are on, for logs and tables."""
        on = [f.name for f in fields(self) if f.name in WAVEFORM_AUGMENTATIONS and getattr(self, f.name) is not None]
        return on + (["specaugment"] if self.specaugment.enabled else [])


def row_rng(seed: int, row_id: str, pass_no: int = 0) -> np.random.Generator:
    """The generator of one row's draws: same (seed, id, pass) -> same augmentation."""
    return np.random.default_rng([seed, zlib.crc32(row_id.encode()), pass_no])


def change_speed(samples: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Play ``samples`` [N] ``factor`` times faster (pitch moves with it): [N] -> [~N / factor]."""
    import soxr

    return soxr.resample(samples, sr * factor, sr).astype(np.float32)


def add_white_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at ``snr_db`` relative to the clip's mean power. [N] -> [N]."""
    power = float(np.mean(samples.astype(np.float64) ** 2))
    if power == 0.0:
        return samples
    noise = rng.standard_normal(samples.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (samples + noise).astype(np.float32)


def room_impulse_response(sr: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """RIR [K] of a random shoebox room (image source method), cut to start at its direct path."""
    import pyroomacoustics as pra

    dims = rng.uniform([3.0, 3.0, 2.4], [8.0, 6.0, 3.5])
    absorption, max_order = pra.inverse_sabine(rt60_s, dims)
    # the order inverse_sabine asks for (up to ~80) costs 0.3 s a clip; 30 costs 10 ms
    room = pra.ShoeBox(dims, fs=sr, materials=pra.Material(absorption), max_order=min(int(max_order), 30))
    source = rng.uniform(0.5, dims - 0.5)
    mic = np.clip(source + rng.uniform(-1.5, 1.5, size=3), 0.3, dims - 0.3)
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return rir[int(np.argmax(np.abs(rir))):]  # direct path at lag 0: onsets do not move


def add_reverb(samples: np.ndarray, sr: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a room's RIR aligned on the direct path; same length and peak level. [N] -> [N]."""
    from scipy.signal import fftconvolve

    rir = room_impulse_response(sr, rt60_s, rng)
    wet = fftconvolve(samples.astype(np.float64), rir / rir[0])[: samples.size]
    peak, wet_peak = float(np.abs(samples).max()), float(np.abs(wet).max())
    return (wet * (peak / wet_peak if wet_peak > 0 else 1.0)).astype(np.float32)


def _audiomentation(name: str, value: float):
    """One audiomentations transform with its parameter fixed to ``value`` (we draw it ourselves)."""
    import audiomentations as am

    if name == "pitch_semitones":
        return am.PitchShift(min_semitones=value, max_semitones=value, p=1.0)
    # zero phase: a causal IIR filter would delay every onset by its group delay
    return am.LowPassFilter(min_cutoff_freq=value, max_cutoff_freq=value, min_rolloff=36, max_rolloff=36,
                            zero_phase=True, p=1.0)


def augment_waveform(samples: np.ndarray, sr: int, cfg: AugmentConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, float, dict[str, float]]:
    """Apply the enabled waveform augmentations, each with ``cfg.probability``.

    samples: float32 [N] at ``sr``. -> (samples [N'], time scale to multiply event times by,
    {augmentation: drawn value}). Order: speed, pitch, reverb, band-limit, noise (noise last,
    so its SNR is the SNR the model hears).
    """
    applied: dict[str, float] = {}
    scale = 1.0
    for name in ("speed", "pitch_semitones", "reverb_rt60_s", "bandlimit_hz", "noise_snr_db"):
        bounds = getattr(cfg, name)
        if bounds is None or rng.random() >= cfg.probability:
            continue
        value = float(rng.uniform(*bounds))
        applied[name] = value
        if name == "speed":
            samples, scale = change_speed(samples, sr, value), 1.0 / value
        elif name == "reverb_rt60_s":
            samples = add_reverb(samples, sr, value, rng)
        elif name == "noise_snr_db":
            samples = add_white_noise(samples, value, rng)
        else:
            samples = _audiomentation(name, value)(samples.astype(np.float32), sample_rate=sr)
    return samples.astype(np.float32), scale, applied


_PASSES: dict[tuple[int, str], int] = {}


def next_pass(seed: int, row_id: str) -> int:
    """How often this process has augmented the row before: a streaming epoch re-reads every row,
    and each pass should draw afresh. The first pass is reproducible for a seed; later ones depend
    on which Ray worker process reads the row."""
    key = (seed, row_id)
    n = _PASSES.get(key, 0)
    _PASSES[key] = n + 1
    return n


def spec_augment(features: Any, feature_mask: Any, cfg: SpecAugmentConfig, generator: Any) -> Any:
    """Mask random frequency bands and time spans of each item's log-mel, inside its valid frames.

    features: float [B, M, F]; feature_mask: bool [B, F]; generator: a ``torch.Generator``.
    Masked cells get the item's mean log-mel (a silent-ish, in-distribution value). Returns a new
    tensor [B, M, F]; the input is not modified.
    """
    import torch

    out = features.clone()
    mels = features.shape[1]
    for b in range(features.shape[0]):
        valid = int(feature_mask[b].sum())
        if valid == 0:
            continue
        fill = float(features[b, :, :valid].mean())
        for _ in range(cfg.freq_masks):
            width = int(torch.randint(0, cfg.freq_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, mels - width + 1), (1,), generator=generator))
            out[b, start:start + width, :valid] = fill
        for _ in range(cfg.time_masks):
            width = min(valid, int(torch.randint(0, cfg.time_width + 1, (1,), generator=generator)))
            start = int(torch.randint(0, max(1, valid - width + 1), (1,), generator=generator))
            out[b, :, start:start + width] = fill
    return out
