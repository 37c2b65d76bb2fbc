import numpy as np
import pytest

from framecall.audio.espeak import EspeakError, VoiceSettings, get_synthesizer


def test_word_events_cover_every_word_in_order():
    utt = get_synthesizer().synthesize("how much wood would a woodchuck chuck")
    assert [w.text for w in utt.words] == "how much wood would a woodchuck chuck".split()
    starts = [w.start_s for w in utt.words]
    assert starts == sorted(starts) and starts[0] < 0.05
    assert starts[-1] < utt.duration_s
    assert utt.sample_rate == 22050 and np.abs(utt.samples).max() > 0.1


def test_voices_differ_and_unknown_voice_is_refused():
    s = get_synthesizer()
    a = s.synthesize("hello there", VoiceSettings(variant="m3", rate_wpm=140, pitch=30))
    b = s.synthesize("hello there", VoiceSettings(variant="f2", rate_wpm=200, pitch=70))
    assert a.duration_s > b.duration_s  # slower rate, longer audio
    with pytest.raises(EspeakError, match="no-such-voice"):
        s.synthesize("hi", VoiceSettings(voice="no-such-voice"))
    with pytest.raises(ValueError, match="empty"):
        s.synthesize("   ")


def test_word_events_match_energy_onsets_after_pauses():
    """README data section: median offset 0 ms, p95 48 ms (silent plosive closures), max 65 ms."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from measure_espeak_alignment import measure

    m = measure(utterances=40, seed=1)
    assert m["words"] >= 150
    assert abs(m["offset_ms_median"]) <= 5
    assert m["offset_ms_min"] >= -10 and m["offset_ms_max"] <= 80
    assert m["within_20ms"] >= 0.8
