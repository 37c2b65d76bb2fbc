"""Log-mel features through transformers' ``WhisperFeatureExtractor``.

The backbone adapter decides the parameters (:class:`FeatureParams`): Qwen2-Audio needs
exactly 3000 mel frames (30 s padded); Qwen2.5-Omni takes any length, and padding a
short clip to 30 s costs ~10x, so by default nothing is padded.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from framecall.audio.io import MIN_AUDIO_SECONDS, TARGET_SAMPLE_RATE, AudioTooShortError, min_samples


@dataclass(frozen=True)
class FeatureParams:
    """Feature extraction settings, recorded in checkpoint manifests."""

    num_mel_bins: int = 128
    """Mel bins (128 for Qwen2.5-Omni and Qwen2-Audio)."""
    sample_rate: int = TARGET_SAMPLE_RATE
    hop_length: int = 160
    """10 ms hop at 16 kHz: 100 mel frames per second, 4 per 40 ms audio token."""
    n_fft: int = 400
    pad_to_seconds: float | None = None
    """Pad (and truncate) every clip to this many seconds; None = keep each clip's length."""

    def to_dict(self) -> dict:
        return asdict(self)

    def num_frames(self, num_samples: int) -> int:
        """Mel frames the extractor emits for ``num_samples`` unpadded samples."""
        if self.pad_to_seconds is not None:
            return int(self.pad_to_seconds * self.sample_rate) // self.hop_length
        return max(1, num_samples // self.hop_length)


@functools.lru_cache(maxsize=8)
def _extractor(params: FeatureParams):
    from transformers import WhisperFeatureExtractor

    chunk = int(params.pad_to_seconds) if params.pad_to_seconds else 30
    return WhisperFeatureExtractor(
        feature_size=params.num_mel_bins,
        sampling_rate=params.sample_rate,
        hop_length=params.hop_length,
        n_fft=params.n_fft,
        chunk_length=chunk,
    )


def log_mel(samples: np.ndarray, params: FeatureParams = FeatureParams(), source: str = "audio") -> np.ndarray:
    """Mono float32 [N] at ``params.sample_rate`` -> log-mel float32 [num_mel_bins, F].

    F = N // hop_length unpadded (see :meth:`FeatureParams.num_frames`). A clip shorter than
    :data:`~framecall.audio.io.MIN_AUDIO_SECONDS` (which would give no audio token, and below
    n_fft / 2 samples a RuntimeError from the STFT's reflect padding) raises AudioTooShortError
    naming ``source``.
    """
    if samples.size < min_samples(params.sample_rate):
        raise AudioTooShortError(source, f"{samples.size} samples at {params.sample_rate} Hz, shorter than the "
                                         f"minimum of {MIN_AUDIO_SECONDS * 1000:.0f} ms (one audio token)")
    fe = _extractor(params)
    if params.pad_to_seconds is not None:
        out = fe(samples, sampling_rate=params.sample_rate, padding="max_length", return_tensors="np")
        return out["input_features"][0].astype(np.float32)
    out = fe(
        samples,
        sampling_rate=params.sample_rate,
        padding="longest",
        truncation=False,
        return_tensors="np",
    )
    feats = out["input_features"][0]
    return np.ascontiguousarray(feats[:, : params.num_frames(samples.size)], dtype=np.float32)
