"""Log-mel features: transformers' ``WhisperFeatureExtractor`` per clip, or a padded batch in torch.

The backbone adapter decides the parameters (:class:`FeatureParams`): Qwen2-Audio needs
exactly 3000 mel frames (30 s padded); Qwen2.5-Omni takes any length, and padding a
short clip to 30 s costs ~10x, so by default nothing is padded.

:func:`log_mel` featurizes one clip (the extractor); :func:`log_mel_batch` a padded batch at once
on any torch device (the model's), with each clip's features equal to :func:`log_mel`'s (the
max abs difference is in BENCHMARKS.md and checked by tests/audio/test_batched_features.py).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch

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


def pad_waveforms(waves: list[np.ndarray], device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mono float32 clips [N_b] -> (samples float32 [B, max N_b], zero padded on the right; lengths int64 [B]),
    on ``device`` (one host-to-device copy of the padded batch)."""
    if not waves:
        raise ValueError("cannot pad an empty batch of waveforms")
    lengths = torch.tensor([w.size for w in waves], dtype=torch.int64)
    padded = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
    for b, w in enumerate(waves):  # numpy copies: the clips may be read-only views of Arrow buffers
        padded[b, : w.size] = w
    return torch.from_numpy(padded).to(device), lengths.to(device)


@functools.lru_cache(maxsize=8)
def _torch_constants(params: FeatureParams, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(hann window [n_fft], mel filters [n_fft // 2 + 1, M]) on ``device``: the extractor's own filters."""
    filters = torch.from_numpy(_extractor(params).mel_filters).to(device, torch.float32)
    return torch.hann_window(params.n_fft, device=device), filters


def _reflect_padded(samples: torch.Tensor, lengths: torch.Tensor, half: int) -> torch.Tensor:
    """[B, S] -> [B, S + 2 * half]: each row reflect-padded by ``half`` at both ends of ITS OWN length
    (what a centred STFT does to the clip alone). Padding a batch must not change a clip: what lies
    past a row's right reflection reaches none of its frames."""
    bsz, width = samples.shape
    out = samples.new_zeros(bsz, width + 2 * half)
    out[:, half : half + width] = samples
    out[:, :half] = samples[:, 1 : half + 1].flip(1)  # x[-k] = x[k]
    k = torch.arange(1, half + 1, device=samples.device)[None, :]
    last = (lengths - 1)[:, None]  # [B, 1]
    out.scatter_(1, last + half + k, samples.gather(1, last - k))  # x[L-1+k] = x[L-1-k]
    return out


def log_mel_batch(samples: torch.Tensor, lengths: torch.Tensor, params: FeatureParams = FeatureParams(),
                  sources: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch -> its log-mels at once, on the batch's device, float32.

    samples [B, S] (zero padded on the right), lengths [B] -> (features [B, M, F_max], zero past each
    clip's F_b frames; feature_mask bool [B, F_max]). F_b = :meth:`FeatureParams.num_frames` of the
    clip, as :func:`log_mel` gives it, and each row equals :func:`log_mel` of its clip alone: every
    clip gets its own reflect padding and its own max - 8 floor (Whisper's per-clip normalisation).
    With ``pad_to_seconds`` every clip is zero padded (or cut) to that length first, as the extractor
    does. A clip shorter than one audio token raises AudioTooShortError naming ``sources[b]``.
    """
    if samples.dim() != 2 or lengths.shape != samples.shape[:1]:
        raise ValueError(f"expected samples [B, S] and lengths [B], got {tuple(samples.shape)} and "
                         f"{tuple(lengths.shape)}")
    for b, n in enumerate(lengths.tolist()):
        if n < min_samples(params.sample_rate):
            log_mel(np.zeros(n, np.float32), params, sources[b] if sources else f"batch row {b}")  # raises
    samples, lengths = samples.float(), lengths.to(samples.device)
    if samples.device.type == "cpu" and samples.shape[0] > CPU_GROUP and int(lengths.min()) < int(lengths.max()):
        return _log_mel_length_groups(samples, lengths, params)
    return _log_mel_padded(samples, lengths, params)


CPU_GROUP = 8
"""On CPU, :func:`log_mel_batch` featurizes clips of similar length together, this many at a time: padding
a batch of 1-5 s clips to its longest doubled the STFT work (1.1 vs 2.0 CPU ms per clip at batch 32,
against 1.8 per clip alone). On an accelerator one launch for the whole batch is what pays."""


def _log_mel_length_groups(samples: torch.Tensor, lengths: torch.Tensor,
                           params: FeatureParams) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_log_mel_padded` over groups of CPU_GROUP rows sorted by length, put back in batch order."""
    order = torch.argsort(lengths)
    frames = lengths // params.hop_length if params.pad_to_seconds is None else None
    f_max = int(frames.max()) if frames is not None else params.num_frames(0)
    features = samples.new_zeros(samples.shape[0], params.num_mel_bins, f_max)
    mask = torch.zeros(samples.shape[0], f_max, dtype=torch.bool)
    for lo in range(0, samples.shape[0], CPU_GROUP):
        rows = order[lo:lo + CPU_GROUP]
        group_features, group_mask = _log_mel_padded(samples[rows], lengths[rows], params)
        features[rows, :, : group_mask.shape[1]] = group_features
        mask[rows, : group_mask.shape[1]] = group_mask
    return features, mask


def _log_mel_padded(samples: torch.Tensor, lengths: torch.Tensor,
                    params: FeatureParams) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch at once (see :func:`log_mel_batch`): samples float32 [B, S], lengths [B] on one device."""
    if params.pad_to_seconds is not None:
        target = int(params.pad_to_seconds * params.sample_rate)
        keep = torch.arange(samples.shape[1], device=samples.device)[None, :] < lengths[:, None]
        samples = torch.nn.functional.pad(torch.where(keep, samples, 0.0), (0, max(0, target - samples.shape[1])))
        samples, lengths = samples[:, :target], torch.full_like(lengths, target)
    samples = samples[:, : int(lengths.max())]  # no STFT frames past the longest clip
    window, filters = _torch_constants(params, str(samples.device))
    padded = _reflect_padded(samples, lengths, params.n_fft // 2)  # [B, S + n_fft]
    stft = torch.stft(padded, params.n_fft, params.hop_length, window=window, center=False,
                      return_complex=True)  # [B, n_fft // 2 + 1, S // hop + 1]
    frames = lengths // params.hop_length  # [B]: the extractor drops the STFT's last frame
    f_max = int(frames.max())
    stft = stft[..., :f_max]
    power = stft.real ** 2 + stft.imag ** 2  # |X|^2 as the extractor's abs() ** 2, without the sqrt (3x faster)
    log_spec = torch.clamp(filters.T @ power, min=1e-10).log10()  # [B, M, F_max]
    mask = torch.arange(f_max, device=samples.device)[None, :] < frames[:, None]  # [B, F_max]
    peak = log_spec.amax(dim=1).masked_fill(~mask, float("-inf")).amax(dim=1)[:, None, None]  # per clip [B, 1, 1]
    log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
    return log_spec.masked_fill(~mask[:, None, :], 0.0), mask
