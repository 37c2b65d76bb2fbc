"""Bounded-memory reading of long files: AudioWindows (streamed windows) and read_mono_bounded's
single preallocated array."""

import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from framecall.audio.io import (
    AudioTooLongError,
    AudioTooShortError,
    AudioWindows,
    EmptyAudioError,
    NonFiniteAudioError,
    UndecodableAudioError,
    decode_audio,
)
from framecall.inference import chunk_spans, chunk_step

WINDOW, OVERLAP, TOKEN = 30 * 16000, 4 * 16000, 640
STEP = chunk_step(WINDOW, OVERLAP, TOKEN)


def _noise(rate: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.2 * rng.standard_normal((int(rate * seconds), channels)), -1, 1).astype(np.float32)


def _flac_unknown_length(path, x, rate):
    """A FLAC whose STREAMINFO says 0 samples ("unknown"), as a stream encoder writes it."""
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="FLAC", subtype="PCM_16")
    d = bytearray(buf.getvalue())
    word = int.from_bytes(d[18:26], "big")
    d[18:26] = (word & ~((1 << 36) - 1)).to_bytes(8, "big")
    path.write_bytes(bytes(d))
    return path


@pytest.mark.parametrize("rate,channels,seconds", [(16000, 1, 95.3), (44100, 2, 95.3), (22050, 1, 30.0),
                                                   (44100, 2, 12.0), (16000, 1, 56.0)])
def test_windows_equal_the_in_memory_chunks(tmp_path, rate, channels, seconds):
    """Same spans as chunk_spans on the decoded recording and the same samples, bit for bit: one
    streaming soxr resampler gives what resampling the whole file does (no edge effects)."""
    path = tmp_path / "x.flac"
    sf.write(path, _noise(rate, seconds, channels), rate, subtype="PCM_16")
    whole, _ = decode_audio(path)
    spans = chunk_spans(whole.size, WINDOW, OVERLAP, TOKEN)
    windows = AudioWindows(path, WINDOW, STEP)
    got = list(windows)
    assert [(s, s + w.size) for s, w in got] == spans
    for (lo, hi), (_, w) in zip(spans, got):
        np.testing.assert_array_equal(w, whole[lo:hi])
    assert windows.num_samples == whole.size and windows.declared_s == pytest.approx(seconds, abs=1 / rate)


def test_unknown_length_is_counted_as_read_and_refused_past_the_limit(tmp_path):
    path = _flac_unknown_length(tmp_path / "stream.flac", _noise(16000, 40.0, 1), 16000)
    windows = AudioWindows(path, WINDOW, STEP, max_seconds=35.0)  # the header says nothing: accepted
    assert windows.declared_s is None
    with pytest.raises(AudioTooLongError, match=r"^.*stream\.flac: audio decodes to more than 35\.00 s"):
        list(windows)
    assert sum(1 for _ in AudioWindows(path, WINDOW, STEP, max_seconds=41.0)) == 2


def test_declared_length_over_the_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, _noise(16000, 20.0, 1), 16000)
    with pytest.raises(AudioTooLongError, match=r"long\.wav: header declares 20\.00 s of audio, over the limit"):
        AudioWindows(path, WINDOW, STEP, max_seconds=10.0)


def test_bad_files_are_named(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00junk, not a wav file")
    with pytest.raises(UndecodableAudioError, match=r"junk\.wav: cannot decode audio"):
        AudioWindows(tmp_path / "junk.wav", WINDOW, STEP)
    with pytest.raises(UndecodableAudioError, match="no such audio file"):
        AudioWindows(tmp_path / "missing.wav", WINDOW, STEP, source="list.txt line 3")
    nan = _noise(16000, 40.0, 1)
    nan[35 * 16000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match=r"^row 7: 1 NaN/inf samples"):
        list(AudioWindows(tmp_path / "nan.wav", WINDOW, STEP, source="row 7"))
    sf.write(tmp_path / "tiny.wav", _noise(16000, 0.01, 1), 16000)
    with pytest.raises(AudioTooShortError, match=r"tiny\.wav: audio is 10\.0 ms"):
        list(AudioWindows(tmp_path / "tiny.wav", WINDOW, STEP))
    _flac_unknown_length(tmp_path / "empty.flac", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises((EmptyAudioError, UndecodableAudioError), match=r"empty\.flac: "):
        list(AudioWindows(tmp_path / "empty.flac", WINDOW, STEP))


def test_a_window_iteration_holds_one_window_not_the_recording(tmp_path):
    """Ten minutes (38 MB of 16 kHz float32 after resampling from 44.1 kHz stereo): reading every
    window allocates at most a few windows' worth (one window is 1.9 MB) at any time."""
    path = tmp_path / "ten.flac"
    block = _noise(44100, 10.0, 2)
    with sf.SoundFile(path, "w", 44100, 2, format="FLAC", subtype="PCM_16") as f:
        for _ in range(60):
            f.write(block)
    tracemalloc.start()
    try:
        count = sum(1 for _ in AudioWindows(path, WINDOW, STEP))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == len(chunk_spans(600 * 16000, WINDOW, OVERLAP, TOKEN)) == 23
    assert peak < 4 * WINDOW * 4, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("channels", [1, 2])
def test_declared_length_is_read_into_one_array(tmp_path, channels):
    """read_mono_bounded fills one preallocated array: peak = the result + one block, not 2x."""
    x = _noise(16000, 60.0, channels)
    data = io.BytesIO()
    sf.write(data, x, 16000, format="FLAC", subtype="PCM_16")
    audio_bytes = 60 * 16000 * 4
    tracemalloc.start()
    try:
        y, _ = decode_audio(data.getvalue())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.size == x.shape[0]
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1 / 2**14)
    assert peak < audio_bytes + len(data.getvalue()) + 2**20 + 65536 * channels * 4, f"peak {peak / 2**20:.1f} MiB"
