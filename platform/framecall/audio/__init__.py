"""Audio decoding, validation, resampling, features and synthesis."""

from framecall.audio.io import (
    TARGET_SAMPLE_RATE,
    AudioError,
    AudioTooLongError,
    ChannelLayoutError,
    EmptyAudioError,
    NonFiniteAudioError,
    UndecodableAudioError,
    decode_audio,
    encode_flac,
    resample,
    validate_samples,
)

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioError",
    "AudioTooLongError",
    "ChannelLayoutError",
    "EmptyAudioError",
    "NonFiniteAudioError",
    "UndecodableAudioError",
    "decode_audio",
    "encode_flac",
    "resample",
    "validate_samples",
]
