"""Word intervals for aligner output formats (TextGrid, CTM).

A frame head gives word *start* times. A word ends where the next begins; the last
word ends at the detected end of speech: the end of the last 10 ms window whose RMS is
within 35 dB of the loudest window (clamped to be after the last start).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def detect_speech_end(samples: np.ndarray, sample_rate: int, below_peak_db: float = 35.0) -> float:
    """Seconds at which speech ends in mono ``samples`` [N] (0.0 for digital silence)."""
    win = max(1, int(0.01 * sample_rate))
    n = samples.size // win
    if n == 0:  # shorter than one window
        return samples.size / sample_rate if np.abs(samples).max(initial=0.0) > 0 else 0.0
    rms = np.sqrt((samples[: n * win].astype(np.float64).reshape(n, win) ** 2).mean(1))
    if rms.max() == 0:
        return 0.0
    loud = np.nonzero(rms >= rms.max() * 10 ** (-below_peak_db / 20))[0]
    return float((loud[-1] + 1) * win / sample_rate)


def word_intervals(starts_s: Sequence[float], speech_end_s: float) -> list[tuple[float, float]]:
    """(start, end) per word: end = next start; the last ends at ``speech_end_s``.

    Starts are sorted first; the last end is at least the last start.
    """
    starts = sorted(float(s) for s in starts_s)
    ends = starts[1:] + ([max(speech_end_s, starts[-1])] if starts else [])
    return list(zip(starts, ends))
