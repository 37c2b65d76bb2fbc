"""Decode, mix down, resample and validate audio.

Every failure raises a subclass of :class:`AudioError` whose message starts with the
source it came from (a file path, or ``shard.parquet row 12 (id=...)``), so a bad item
in a million-row corpus can be found.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

TARGET_SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """Audio that cannot be used. ``source`` names the file / shard and row."""

    reason = "invalid"

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        self.detail = detail
        super().__init__(f"{source}: {detail}")


class UndecodableAudioError(AudioError):
    reason = "undecodable"


class EmptyAudioError(AudioError):
    reason = "empty"


class NonFiniteAudioError(AudioError):
    reason = "non_finite"


class AudioTooLongError(AudioError):
    reason = "too_long"


class ChannelLayoutError(AudioError):
    reason = "channel_layout"


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr (high quality). ``samples``: float32 [N]."""
    if orig_sr == target_sr:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def validate_samples(
    samples: np.ndarray, sample_rate: int, source: str, max_seconds: float | None = None
) -> np.ndarray:
    """Check a mono float signal [N]; returns it unchanged, or raises an AudioError."""
    if samples.ndim != 1:
        raise ChannelLayoutError(source, f"expected mono samples [N], got shape {samples.shape}")
    if samples.size == 0:
        raise EmptyAudioError(source, "audio has zero samples")
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise NonFiniteAudioError(source, f"{bad} NaN/inf samples")
    duration = samples.size / sample_rate
    if max_seconds is not None and duration > max_seconds:
        raise AudioTooLongError(source, f"audio is {duration:.2f} s, over the limit of {max_seconds:.2f} s")
    return samples


def decode_audio(
    data: bytes | str | Path,
    source: str | None = None,
    target_sr: int | None = TARGET_SAMPLE_RATE,
    max_seconds: float | None = None,
    max_channels: int = 2,
) -> tuple[np.ndarray, int]:
    """Decode wav/flac/ogg bytes or a file to mono float32 [N] at ``target_sr``.

    ``max_channels``: layouts with more channels (e.g. 5.1) are refused rather than
    mixed down, since a naive mean of surround channels is rarely what a user wants.
    ``target_sr=None`` keeps the file's own rate. Returns ``(samples, sample_rate)``.
    """
    if source is None:
        source = str(data) if isinstance(data, (str, Path)) else "<bytes>"
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) == 0:
            raise EmptyAudioError(source, "audio bytes are empty")
        handle: io.BytesIO | str = io.BytesIO(bytes(data))
    else:
        path = Path(data)
        if not path.is_file():
            raise UndecodableAudioError(source, f"no such audio file {path}")
        handle = str(path)
    try:
        samples, sr = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise UndecodableAudioError(source, f"cannot decode audio ({e})") from e
    channels = samples.shape[1]
    if channels == 0 or channels > max_channels:
        raise ChannelLayoutError(source, f"{channels} channels; supported: 1 to {max_channels}")
    if samples.shape[0] == 0:
        raise EmptyAudioError(source, "audio has zero samples")
    mono = samples.mean(axis=1) if channels > 1 else samples[:, 0]
    # validate before resampling: NaN would smear through the filter, length is cheaper to check
    validate_samples(mono, sr, source, max_seconds)
    if target_sr is not None and sr != target_sr:
        mono, sr = resample(mono, sr, target_sr), target_sr
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def encode_flac(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono float [N] in [-1, 1] -> 16-bit FLAC bytes (clipped, so it never wraps)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()
