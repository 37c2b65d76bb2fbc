import io

import numpy as np
import pytest
import soundfile as sf

from framecall.audio.io import (
    AudioTooLongError, ChannelLayoutError, EmptyAudioError, NonFiniteAudioError, UndecodableAudioError,
    decode_audio, encode_flac,
)


def _bytes(x: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _sine(sr: int, seconds: float = 1.0, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("WAV", "FLOAT")])
def test_decodes_formats_to_16k_mono(fmt, subtype):
    x = _sine(22050)
    samples, sr = decode_audio(_bytes(x, 22050, fmt, subtype))
    assert sr == 16000
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size - 16000) <= 2
    # the tone survives resampling: its spectrum peaks at 440 Hz
    spec = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spec) * 16000 / samples.size - 440) < 3


def test_stereo_is_mixed_to_mono():
    left, right = _sine(16000), np.zeros(16000, np.float32)
    samples, _ = decode_audio(_bytes(np.stack([left, right], 1), 16000, "WAV", "FLOAT"))
    np.testing.assert_allclose(samples, left / 2, atol=1e-6)


def test_file_path_and_missing_file(tmp_path):
    p = tmp_path / "a.flac"
    p.write_bytes(_bytes(_sine(16000), 16000, "FLAC"))
    samples, sr = decode_audio(p)
    assert sr == 16000 and samples.size == 16000
    with pytest.raises(UndecodableAudioError, match="nope.wav"):
        decode_audio(tmp_path / "nope.wav")


def test_errors_name_the_source():
    good = _bytes(_sine(16000), 16000, "FLAC")
    with pytest.raises(UndecodableAudioError, match=r"^shard-3 row 7: cannot decode"):
        decode_audio(b"this is not audio at all" * 10, source="shard-3 row 7")
    with pytest.raises(UndecodableAudioError, match="truncated.flac"):
        decode_audio(good[:60], source="truncated.flac")
    with pytest.raises(EmptyAudioError, match="empty.wav"):
        decode_audio(b"", source="empty.wav")
    with pytest.raises(EmptyAudioError, match="zero.wav"):
        decode_audio(_bytes(np.zeros(0, np.float32), 16000, "WAV"), source="zero.wav")
    nan = _sine(16000)
    nan[100:110] = np.nan
    with pytest.raises(NonFiniteAudioError, match=r"nan.wav: 10 NaN/inf"):
        decode_audio(_bytes(nan, 16000, "WAV", "FLOAT"), source="nan.wav")
    with pytest.raises(AudioTooLongError, match=r"long.flac: audio is 3.00 s"):
        decode_audio(_bytes(_sine(16000, 3.0), 16000, "FLAC"), source="long.flac", max_seconds=2.0)
    surround = np.zeros((1600, 6), np.float32)
    with pytest.raises(ChannelLayoutError, match="6 channels"):
        decode_audio(_bytes(surround, 16000, "WAV", "FLOAT"), source="51.wav")


def test_flac_roundtrip_is_16_bit_and_clipped():
    x = _sine(16000) * 3  # over full scale
    y, sr = decode_audio(encode_flac(x, 16000))
    assert sr == 16000 and np.abs(y).max() <= 1.0
    small = _sine(16000)
    z, _ = decode_audio(encode_flac(small, 16000))
    assert np.abs(z - small).max() < 1 / 2**14
