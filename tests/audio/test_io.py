import io
import struct
import tracemalloc
import wave

import numpy as np
import pytest
import soundfile as sf

from framecall.audio.features import log_mel
from framecall.audio.io import (
    DEFAULT_MAX_SECONDS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AmplitudeError, AudioError, AudioTooLongError,
    AudioTooShortError, ChannelLayoutError, EmptyAudioError, NonFiniteAudioError, SampleRateError,
    UndecodableAudioError, decode_audio, encode_flac, min_samples,
)
from framecall.models.spec import qwen_audio_tokens


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
    with pytest.raises(AudioTooLongError, match=r"long.flac: header declares 3.00 s"):
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


# --- hostile files, built in memory -------------------------------------------------------------

def _flac_with_total(data: bytes, total: int) -> bytes:
    """Rewrite STREAMINFO's 36-bit total-samples field (bytes 18..26 hold it in their low bits);
    0 means "unknown length" in the FLAC format."""
    d = bytearray(data)
    word = int.from_bytes(d[18:26], "big")
    d[18:26] = ((word & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    return bytes(d)


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, no reflection, init 0)."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def _ogg_with_last_granule(data: bytes, granule: int) -> bytes:
    """Set the last page's granule position (the stream's declared length) and fix its CRC."""
    last = data.rfind(b"OggS")
    d = bytearray(data)
    d[last + 6 : last + 14] = struct.pack("<q", granule)
    d[last + 22 : last + 26] = b"\0\0\0\0"
    d[last + 22 : last + 26] = struct.pack("<I", _ogg_crc(bytes(d[last:])))
    return bytes(d)


def _wav_at(rate: int, num_samples: int = 1600) -> bytes:
    """16-bit mono WAV with any header rate (libsndfile refuses to write absurd ones, `wave` does not)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(np.arange(num_samples) / 3) * 8000).astype("<i2").tobytes())
    return buf.getvalue()


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_flac_header_claiming_2_to_36_samples_is_refused_before_reading():
    lying = _flac_with_total(_bytes(_sine(16000, 0.1), 16000, "FLAC"), (1 << 36) - 1)[:132]
    assert len(lying) == 132
    with pytest.raises(AudioTooLongError, match=r"^bomb.flac: header declares 4294967.\d+ s"):
        decode_audio(lying, source="bomb.flac", max_seconds=30)
    # no max_seconds: the default limit still applies
    with pytest.raises(AudioTooLongError, match=rf"over the limit of {DEFAULT_MAX_SECONDS:.2f} s"):
        decode_audio(lying, source="bomb.flac")


def test_ogg_claiming_2_to_40_samples_is_refused_before_reading():
    ogg = _ogg_with_last_granule(_bytes(_sine(16000, 10.0), 16000, "OGG", "VORBIS"), 1 << 40)
    assert sf.info(io.BytesIO(ogg)).frames == 1 << 40  # libsndfile believes the lie
    with pytest.raises(AudioTooLongError, match=r"^q.ogg: header declares 68719476.74 s"):
        decode_audio(ogg, source="q.ogg", max_seconds=30)


def test_flac_silence_bomb_stops_at_the_limit_with_bounded_memory():
    """10 minutes of silence is ~28 KB of FLAC and 38 MB of float32. With the header saying
    "unknown length" the reader must stop one block past 30 s: < 4 MB peak (30 s of mono float32
    is 1.9 MB). A header lying short is never read past the limit either."""
    honest = _bytes(np.zeros(16000 * 600, np.int16), 16000, "FLAC", "PCM_16")
    assert len(honest) < 64_000

    def refuse():
        with pytest.raises(AudioTooLongError, match=r"^bomb.flac: audio decodes to more than 30.00 s.*no length"):
            decode_audio(_flac_with_total(honest, 0), source="bomb.flac", max_seconds=30)
    assert _peak_bytes(refuse) < 4 * 2**20
    short_lie, _ = decode_audio(_flac_with_total(honest, 16000), source="bomb.flac", max_seconds=30)
    assert short_lie.size <= 30 * 16000
    # an honest header is refused before a block is decoded
    def refuse_from_header():
        with pytest.raises(AudioTooLongError, match="header declares 600.00 s"):
            decode_audio(honest, source="bomb.flac", max_seconds=30)
    assert _peak_bytes(refuse_from_header) < 512 * 2**10


def test_flac_of_unknown_length_is_decoded_in_blocks():
    x = _sine(16000, 5.0)  # > one block, ends mid-block
    unknown = _flac_with_total(_bytes(x, 16000, "FLAC", "PCM_16"), 0)
    assert sf.info(io.BytesIO(unknown)).frames in (0, 2**63 - 1)
    y, sr = decode_audio(unknown, source="unknown.flac")
    assert sr == 16000 and y.size == x.size
    assert np.abs(y - x).max() < 1 / 2**14


@pytest.mark.parametrize("rate", [1, 999, 384_001, 10_000_000, 2_000_000_000])
def test_out_of_bounds_sample_rates_are_refused(rate):
    with pytest.raises(SampleRateError, match=rf"^r.wav: sample rate {rate} Hz is outside 1000 to 384000 Hz"):
        decode_audio(_wav_at(rate), source="r.wav")


@pytest.mark.parametrize("rate", [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE])
def test_sample_rate_bounds_themselves_are_accepted(rate):
    samples, sr = decode_audio(_wav_at(rate, num_samples=rate // 10), source="edge.wav")  # 0.1 s
    assert sr == 16000 and abs(samples.size - 1600) <= 2


@pytest.mark.parametrize("num_samples,rate", [(1, 16000), (320, 16000), (479, 16000), (1300, 44100)])
def test_clips_shorter_than_one_audio_token_are_refused(num_samples, rate):
    with pytest.raises(AudioTooShortError, match=r"^tiny.wav: audio is [\d.]+ ms, shorter than the minimum of 30 ms"):
        decode_audio(_wav_at(rate, num_samples), source="tiny.wav")


def test_shortest_allowed_clip_gives_one_audio_token_of_features():
    samples, sr = decode_audio(_wav_at(16000, 480), source="min.wav")
    assert samples.size == min_samples(sr) == 480
    feats = log_mel(samples)
    assert qwen_audio_tokens(feats.shape[1]) == 1
    # 44.1 kHz resampled to 16 kHz just at the limit
    samples, _ = decode_audio(_wav_at(44100, 1323), source="min44.wav")
    assert samples.size >= 480


@pytest.mark.parametrize("num_samples", [0, 1, 200, 479])
def test_log_mel_refuses_short_input_with_an_audio_error(num_samples):
    with pytest.raises(AudioTooShortError, match=rf"^clip 3: {num_samples} samples at 16000 Hz"):
        log_mel(np.zeros(num_samples, np.float32), source="clip 3")


def test_absurd_float_magnitudes_are_refused_and_headroom_is_kept():
    loud = np.full(1600, 1e30, np.float32)
    with pytest.raises(AmplitudeError, match=r"^loud.wav: sample magnitude 1e\+30 is over the limit of 64"):
        decode_audio(_bytes(loud, 16000, "WAV", "FLOAT"), source="loud.wav")
    hot = _sine(16000) * 4  # +12 dBFS float: kept as is, not clipped
    y, _ = decode_audio(_bytes(hot, 16000, "WAV", "FLOAT"), source="hot.wav")
    np.testing.assert_allclose(y, hot, atol=1e-6)


def test_nan_float_wav_is_refused():
    x = np.full(1600, np.nan, np.float32)
    with pytest.raises(NonFiniteAudioError, match=r"^n.wav: 1600 NaN/inf samples"):
        decode_audio(_bytes(x, 16000, "WAV", "FLOAT"), source="n.wav")


def test_eight_channels_are_refused_from_the_header_before_decoding():
    """60 s of 8-channel silence would be 30 MB of float32; the refusal allocates almost nothing."""
    eight = _bytes(np.zeros((16000 * 60, 8), np.int16), 16000, "FLAC", "PCM_16")

    def refuse():
        with pytest.raises(ChannelLayoutError, match=r"^8ch.flac: 8 channels; supported: 1 to 2"):
            decode_audio(eight, source="8ch.flac")
    assert _peak_bytes(refuse) < 512 * 2**10
    with pytest.raises(ChannelLayoutError, match="8 channels"):
        decode_audio(_bytes(np.zeros((1600, 8), np.float32), 16000, "WAV", "FLOAT"), source="8ch.wav")


def test_every_failure_is_an_audio_error_and_a_value_error():
    for cls in (SampleRateError, AudioTooShortError, AmplitudeError, AudioTooLongError, ChannelLayoutError):
        assert issubclass(cls, AudioError) and issubclass(cls, ValueError)
