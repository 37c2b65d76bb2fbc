"""Decode, mix down, resample and validate audio, with every size the file claims bounded.

Every failure raises a subclass of :class:`AudioError` whose message starts with the
source it came from (a file path, ``shard.parquet row 12 (id=...)``, or a request field), so a bad
item in a million-row corpus, or in one request of a batch, can be found.

Nothing a container header says is trusted with memory: the header (rate, channels, declared
length) is checked against the limits below *before* any sample is read, and the samples are then
read forward in blocks of :data:`DECODE_BLOCK_FRAMES`, so a file whose header lies (a 132-byte FLAC
claiming 2^36 samples) or a compression bomb (FLAC silence is ~340 samples per byte) stops at the
length limit plus one block and is refused. A FLAC/OGG of unknown length is decoded the same way.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

TARGET_SAMPLE_RATE = 16_000
MIN_SAMPLE_RATE = 1_000
"""Hz. Below this nothing a speech/audio model hears survives; 1 Hz WAVs are refused."""
MAX_SAMPLE_RATE = 384_000
"""Hz. The highest rate studio converters use; 10 MHz or 2 GHz headers are refused."""
MAX_CHANNELS = 2
"""Default channel limit: mono or stereo are mixed down; 5.1 and up are refused (a mean of surround
channels is rarely what a user wants). Checked from the header, before decoding."""
DEFAULT_MAX_SECONDS = 3600.0
"""Length limit when a caller gives none (``max_seconds=None``): decoding is never unbounded."""
MIN_AUDIO_SECONDS = 0.03
"""30 ms = 480 samples at 16 kHz = 3 mel frames: the shortest clip that gives one audio token
(Qwen2-Audio / Qwen2.5-Omni, see ``models.spec.qwen_audio_tokens``). Shorter clips are refused."""
MAX_ABS_AMPLITUDE = 64.0
"""Float samples beyond +-64 (+36 dBFS) are refused, not clipped: such values (a float WAV at 1e30)
mean a corrupt or mis-scaled file, and clipping would hand the model a square wave silently.
Headroom up to this bound is kept as is (float formats may legitimately exceed 1.0)."""
DECODE_BLOCK_FRAMES = 65_536
"""Frames read per block; a lying file costs at most this much beyond the length limit."""
_UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's SF_COUNT_MAX: a FLAC whose STREAMINFO says 0 samples


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


class AmplitudeError(AudioError):
    reason = "amplitude"


class AudioTooLongError(AudioError):
    reason = "too_long"


class AudioTooShortError(AudioError):
    reason = "too_short"


class SampleRateError(AudioError):
    reason = "sample_rate"


class ChannelLayoutError(AudioError):
    reason = "channel_layout"


class _ForwardOnlySoundFile(sf.SoundFile):
    """A SoundFile that never seeks. soundfile re-seeks after every read of a seekable file, and
    libsndfile's FLAC seek fails at the end of a stream of unknown length ("psf_fseek() failed");
    decoding only ever reads forward, so it needs no seeks."""

    def seekable(self) -> bool:
        return False


def resample(samples: np.ndarray, orig_sr: int, target_sr: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr (high quality). ``samples``: float32 [N]."""
    if orig_sr == target_sr:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def min_samples(sample_rate: int) -> int:
    """The fewest samples at ``sample_rate`` a clip may have (:data:`MIN_AUDIO_SECONDS`)."""
    return math.ceil(MIN_AUDIO_SECONDS * sample_rate)


def validate_samples(
    samples: np.ndarray, sample_rate: int, source: str, max_seconds: float | None = None
) -> np.ndarray:
    """Check a mono float signal [N]: shape, non-empty, finite, sane amplitude, length limit.

    Returns it unchanged, or raises an AudioError naming ``source``.
    """
    if samples.ndim != 1:
        raise ChannelLayoutError(source, f"expected mono samples [N], got shape {samples.shape}")
    if samples.size == 0:
        raise EmptyAudioError(source, "audio has zero samples")
    lo, hi = float(samples.min()), float(samples.max())  # no temporary the size of the audio (NaN propagates)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int((~np.isfinite(samples)).sum())
        raise NonFiniteAudioError(source, f"{bad} NaN/inf samples")
    peak = max(hi, -lo)
    if peak > MAX_ABS_AMPLITUDE:
        raise AmplitudeError(source, f"sample magnitude {peak:.3g} is over the limit of {MAX_ABS_AMPLITUDE:g} "
                                     "(corrupt or mis-scaled float audio)")
    duration = samples.size / sample_rate
    if max_seconds is not None and duration > max_seconds:
        raise AudioTooLongError(source, f"audio is {duration:.2f} s, over the limit of {max_seconds:.2f} s")
    return samples


def check_header(info: sf.SoundFile, source: str, max_seconds: float, max_channels: int) -> None:
    """Refuse a container whose rate, channel count or declared length is out of bounds,
    before a sample is read. An unknown length (0 or SF_COUNT_MAX) is left to the block reader."""
    rate, channels, frames = info.samplerate, info.channels, info.frames
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise SampleRateError(source, f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
    if channels < 1 or channels > max_channels:
        raise ChannelLayoutError(source, f"{channels} channels; supported: 1 to {max_channels}")
    if 0 < frames < _UNKNOWN_FRAMES and frames / rate > max_seconds:
        raise AudioTooLongError(
            source, f"header declares {frames / rate:.2f} s of audio, over the limit of {max_seconds:.2f} s")


def read_mono_bounded(f: sf.SoundFile, source: str, max_seconds: float) -> np.ndarray:
    """Read forward in blocks, mixing down as it goes; stop and refuse past ``max_seconds``.

    A declared length (already checked against the limit by :func:`check_header`) is filled into one
    preallocated float32 [frames] array, mono read straight into it: peak memory is the result plus
    one block [DECODE_BLOCK_FRAMES, C]. An unknown length (or a file decoding past its declared
    one) collects blocks and joins them, briefly twice the audio.
    """
    limit = math.floor(max_seconds * f.samplerate)  # frames allowed
    declared = f.frames if 0 < f.frames < _UNKNOWN_FRAMES else 0
    out = np.empty(min(declared, limit + 1), np.float32)  # [declared] (empty when unknown)
    total = _fill_mono(f, out)
    parts = [out[:total]]
    block = np.empty((DECODE_BLOCK_FRAMES, f.channels), np.float32)
    more = total == out.size  # unknown length, or the declared length read: the file may go on
    while more and total <= limit:
        want = min(DECODE_BLOCK_FRAMES, limit + 1 - total)
        got = f.read(frames=want, dtype="float32", always_2d=True, out=block[:want])
        if len(got) == 0:
            break
        parts.append(mix_down(got))
        total += len(got)
    if total > limit:
        raise AudioTooLongError(
            source, f"audio decodes to more than {max_seconds:.2f} s (the limit); its header declared "
                    f"{'no length' if not declared else f'{declared / f.samplerate:.2f} s'}")
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _fill_mono(f: sf.SoundFile, out: np.ndarray) -> int:
    """Read mono samples into ``out`` [n] until it is full or the file ends -> samples read."""
    total = 0
    block = None if f.channels == 1 else np.empty((DECODE_BLOCK_FRAMES, f.channels), np.float32)
    while total < out.size:
        want = min(DECODE_BLOCK_FRAMES, out.size - total)
        if block is None:  # mono: libsndfile writes into the result itself
            got = len(f.read(frames=want, dtype="float32", out=out[total:total + want]))
        else:
            got = len(mix_down(f.read(frames=want, dtype="float32", always_2d=True, out=block[:want]),
                               out[total:total + want]))
        if got == 0:
            break
        total += got
    return total


def mix_down(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[n, C] float32 -> mono [n] (the channel mean; a copy of the one channel when C = 1)."""
    if out is not None:
        out = out[: len(frames)]
    if frames.shape[1] == 1:
        if out is None:
            return frames[:, 0].copy()
        out[:] = frames[:, 0]
        return out
    return frames.mean(axis=1, out=out)


def _open_source(data: bytes | bytearray | memoryview | str | Path, source: str) -> io.BytesIO | str:
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) == 0:
            raise EmptyAudioError(source, "audio bytes are empty")
        return io.BytesIO(bytes(data))
    path = Path(data)
    if not path.is_file():
        raise UndecodableAudioError(source, f"no such audio file {path}")
    return str(path)


def decode_audio(
    data: bytes | bytearray | memoryview | str | Path,
    source: str | None = None,
    target_sr: int | None = TARGET_SAMPLE_RATE,
    max_seconds: float | None = None,
    max_channels: int = MAX_CHANNELS,
) -> tuple[np.ndarray, int]:
    """Decode wav/flac/ogg bytes or a file to mono float32 [N] at ``target_sr``, bounded.

    Header first (rate in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE], 1..``max_channels`` channels,
    declared length <= ``max_seconds``, default :data:`DEFAULT_MAX_SECONDS`), then a forward block
    read that stops one block past the limit; then finiteness, amplitude and the minimum length
    (:data:`MIN_AUDIO_SECONDS`, checked after resampling). ``target_sr=None`` keeps the file's own
    rate. Returns ``(samples, sample_rate)``; every failure is an :class:`AudioError` naming ``source``.
    """
    if source is None:
        source = str(data) if isinstance(data, (str, Path)) else "<bytes>"
    limit_s = DEFAULT_MAX_SECONDS if max_seconds is None else float(max_seconds)
    handle = _open_source(data, source)
    try:
        with _ForwardOnlySoundFile(handle) as f:
            check_header(f, source, limit_s, max_channels)
            mono, sr = read_mono_bounded(f, source, limit_s), f.samplerate
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError) as e:
        raise UndecodableAudioError(source, f"cannot decode audio ({e})") from e
    # validate before resampling: NaN would smear through the filter, length is cheaper to check
    validate_samples(mono, sr, source, limit_s)
    if target_sr is not None and sr != target_sr:
        mono, sr = resample(mono, sr, target_sr), target_sr
    if mono.size < min_samples(sr):
        raise AudioTooShortError(source, f"audio is {mono.size / sr * 1000:.1f} ms, shorter than the minimum of "
                                         f"{MIN_AUDIO_SECONDS * 1000:.0f} ms (one audio token)")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


class AudioWindows:
    """An audio file read as overlapping windows at ``target_sr``, never holding the recording.

    Iterating yields ``(start, samples)``: float32 [end - start] at ``target_sr`` for the spans
    ``[0, window), [step, step + window), ...``, the last one ending at the recording's end (as
    :func:`framecall.inference.chunk_spans` cuts an in-memory recording, with step = its step). The
    file is read forward once in blocks, mixed down, checked (finite, amplitude, length limit counted
    as it goes) and resampled by one streaming soxr resampler, which gives the same samples as
    resampling the whole recording at once (no edge effects at window borders), so the windows equal
    those cut from :func:`decode_audio`'s result. Memory: one window plus one block, per window the
    caller keeps. The header is checked when constructed; ``num_samples`` is known after iteration.
    """

    def __init__(self, path: str | Path, window: int, step: int, source: str | None = None,
                 target_sr: int = TARGET_SAMPLE_RATE, max_seconds: float | None = None,
                 max_channels: int = MAX_CHANNELS) -> None:
        if not 0 < step <= window:
            raise ValueError(f"need 0 < step <= window, got step {step}, window {window}")
        self.source = str(path) if source is None else source
        self.path = _open_source(path, self.source)
        self.window, self.step, self.target_sr = window, step, target_sr
        self.max_seconds = DEFAULT_MAX_SECONDS if max_seconds is None else float(max_seconds)
        with self._open() as f:
            check_header(f, self.source, self.max_seconds, max_channels)
            self.sample_rate = f.samplerate
            self.declared_s = f.frames / f.samplerate if 0 < f.frames < _UNKNOWN_FRAMES else None  # None: unknown
        self.num_samples: int | None = None  # at target_sr, once read to the end

    def _open(self) -> sf.SoundFile:
        try:
            return _ForwardOnlySoundFile(self.path)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            raise UndecodableAudioError(self.source, f"cannot decode audio ({e})") from e

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        pending, pending_start, start = np.zeros(0, np.float32), 0, 0  # pending: [pending_start, available)
        for chunk in self._resampled():
            pending = np.concatenate((pending, chunk))
            while pending_start + pending.size > start + self.window:  # more follows this window
                yield start, pending[start - pending_start:start - pending_start + self.window].copy()
                start += self.step
                pending, pending_start = pending[start - pending_start:], start
        self.num_samples = pending_start + pending.size
        if self.num_samples < min_samples(self.target_sr):
            raise AudioTooShortError(self.source, f"audio is {self.num_samples / self.target_sr * 1000:.1f} ms, "
                                                  f"shorter than the minimum of {MIN_AUDIO_SECONDS * 1000:.0f} ms")
        yield start, pending[start - pending_start:].copy()

    def _resampled(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at ``target_sr``, checked before resampling as :func:`decode_audio` does."""
        with self._open() as f:
            limit = math.floor(self.max_seconds * f.samplerate)
            resampler = (None if f.samplerate == self.target_sr
                         else soxr.ResampleStream(f.samplerate, self.target_sr, 1, dtype="float32", quality="HQ"))
            block, total = np.empty((DECODE_BLOCK_FRAMES, f.channels), np.float32), 0
            while True:
                want = min(DECODE_BLOCK_FRAMES, limit + 1 - total)
                try:
                    mono = mix_down(f.read(frames=want, dtype="float32", always_2d=True, out=block[:want]))
                except (sf.LibsndfileError, RuntimeError, ValueError) as e:
                    raise UndecodableAudioError(self.source, f"cannot decode audio ({e})") from e
                total += mono.size
                if total > limit:
                    raise AudioTooLongError(self.source, f"audio decodes to more than {self.max_seconds:.2f} s "
                                                         "(the limit)")
                if total == 0:
                    raise EmptyAudioError(self.source, "audio has zero samples")
                if mono.size:
                    validate_samples(mono, f.samplerate, self.source)
                last = mono.size == 0
                yield mono if resampler is None else resampler.resample_chunk(mono, last=last)
                if last:
                    return


def encode_flac(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono float [N] in [-1, 1] -> 16-bit FLAC bytes (clipped, so it never wraps)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()
