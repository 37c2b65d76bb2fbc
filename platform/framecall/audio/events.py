"""Procedural sound events with exact onsets, and noise for mixing at a given SNR.

Each event starts with a 2 ms attack from silence, so its onset (the label) is the
first sample of the event, exactly. Generators take a numpy ``Generator`` and return
float32 [N] at ``sample_rate``; peak amplitude is normalised to 1 before mixing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

_ATTACK_S = 0.002


def _envelope(n: int, sr: int, release_s: float) -> np.ndarray:
    env = np.ones(n, np.float32)
    a = max(1, int(_ATTACK_S * sr))
    env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    r = min(n - a, max(1, int(release_s * sr)))
    env[n - r :] *= np.linspace(1.0, 0.0, r)
    return env


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.abs(x).max())
    return (x / peak).astype(np.float32) if peak > 0 else x.astype(np.float32)


def tone(rng: np.random.Generator, sr: int) -> np.ndarray:
    dur, f = rng.uniform(0.2, 0.5), rng.uniform(400, 1800)
    t = np.arange(int(dur * sr)) / sr
    return _normalise(np.sin(2 * np.pi * f * t) * _envelope(t.size, sr, 0.05))


def chirp(rng: np.random.Generator, sr: int) -> np.ndarray:
    dur = rng.uniform(0.15, 0.35)
    f0, f1 = rng.uniform(500, 900), rng.uniform(2500, 4000)
    t = np.arange(int(dur * sr)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * dur))
    return _normalise(np.sin(phase) * _envelope(t.size, sr, 0.02))


def sweep_down(rng: np.random.Generator, sr: int) -> np.ndarray:
    dur = rng.uniform(0.3, 0.6)
    f0, f1 = rng.uniform(1500, 2500), rng.uniform(200, 400)
    t = np.arange(int(dur * sr)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * dur))
    return _normalise(np.sin(phase) * _envelope(t.size, sr, 0.05))


def click(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.01, 0.03) * sr)
    decay = np.exp(-np.arange(n) / (0.002 * sr))
    return _normalise(rng.standard_normal(n) * decay * _envelope(n, sr, 0.002))


def noise_burst(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.1, 0.3) * sr)
    return _normalise(rng.standard_normal(n) * _envelope(n, sr, 0.03))


def buzz(rng: np.random.Generator, sr: int) -> np.ndarray:
    dur, f = rng.uniform(0.3, 0.6), rng.uniform(90, 180)
    t = np.arange(int(dur * sr)) / sr
    saw = 2 * ((f * t) % 1.0) - 1
    return _normalise(saw * _envelope(t.size, sr, 0.05))


def knock(rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(rng.uniform(0.06, 0.12) * sr)
    t = np.arange(n) / sr
    f = rng.uniform(120, 220)
    return _normalise(np.sin(2 * np.pi * f * t) * np.exp(-t / 0.02) * _envelope(n, sr, 0.005))


def whistle(rng: np.random.Generator, sr: int) -> np.ndarray:
    dur, f = rng.uniform(0.3, 0.7), rng.uniform(2000, 3200)
    t = np.arange(int(dur * sr)) / sr
    vibrato = 40 * np.sin(2 * np.pi * 6 * t)
    phase = 2 * np.pi * np.cumsum(f + vibrato) / sr
    return _normalise(np.sin(phase) * _envelope(t.size, sr, 0.05))


EVENT_GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "tone": tone,
    "chirp": chirp,
    "sweep_down": sweep_down,
    "click": click,
    "noise_burst": noise_burst,
    "buzz": buzz,
    "knock": knock,
    "whistle": whistle,
}


def make_event(label: str, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One event of class ``label`` (see :data:`EVENT_GENERATORS`), float32 [N]."""
    try:
        gen = EVENT_GENERATORS[label]
    except KeyError:
        raise ValueError(f"unknown event label {label!r}; valid: {sorted(EVENT_GENERATORS)}") from None
    return gen(rng, sr)


def add_noise(signal: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white noise so that signal power / noise power = ``snr_db`` (signal [N])."""
    power = float(np.mean(signal.astype(np.float64) ** 2))
    if power == 0.0:
        power = 1e-4  # silent clip: still give it a noise floor
    noise = rng.standard_normal(signal.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (signal + noise).astype(np.float32)
