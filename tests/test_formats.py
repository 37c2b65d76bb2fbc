"""Timing formats: each written and read back by its library with the same times."""

import numpy as np
import pytest
import torch

from framecall import formats
from framecall.formats import FormatError, Interval
from framecall.inference import align_words, energy_offsets, event_confidences

WORDS = [Interval("the", 0.12, 0.31, 0.9), Interval("cat", 0.45, 0.8, 0.5), Interval("sat", 1.05, 1.5, 0.25)]


def _same_times(got, want, places):
    assert [w.label for w in got] == [w.label for w in want]
    assert [round(w.start, places) for w in got] == [round(w.start, places) for w in want]
    assert [round(w.end, places) for w in got] == [round(w.end, places) for w in want]


def test_textgrid_round_trip_keeps_silences(tmp_path):
    path = tmp_path / "a.TextGrid"
    path.write_text(formats.write_textgrid(WORDS, duration_s=2.0))
    _same_times(formats.read_textgrid(path), WORDS, 6)
    from praatio import textgrid

    tier = textgrid.openTextgrid(str(path), includeEmptyIntervals=True).getTier("words")
    labels = [(e.label, e.start, e.end) for e in tier.entries]
    assert labels == [("", 0.0, 0.12), ("the", 0.12, 0.31), ("", 0.31, 0.45), ("cat", 0.45, 0.8),
                      ("", 0.8, 1.05), ("sat", 1.05, 1.5), ("", 1.5, 2.0)]
    with pytest.raises(FormatError, match="no tier 'phones'"):
        formats.read_textgrid(path, tier="phones")


def test_ctm_round_trip_with_confidence(tmp_path):
    path = tmp_path / "a.ctm"
    path.write_text(formats.write_ctm(WORDS, utterance="u7") + formats.write_ctm(WORDS[:1], utterance="u8"))
    got = formats.read_ctm(path)
    assert list(got) == ["u7", "u8"]
    _same_times(got["u7"], WORDS, 3)
    assert [w.confidence for w in got["u7"]] == [0.9, 0.5, 0.25]
    path.write_text("u1 1 0.5 0.2 a\nu1 1 0.9 x b\n")
    with pytest.raises(FormatError, match=r"a\.ctm:2: duration 'x' is not a number"):
        formats.read_ctm(path)
    with pytest.raises(ValueError, match="one non-empty token"):
        formats.write_ctm(WORDS, utterance="two words")


def test_srt_round_trip(tmp_path):
    import srt

    text = formats.write_srt(WORDS)
    assert [s.content for s in srt.parse(text)] == ["the", "cat", "sat"]
    path = tmp_path / "a.srt"
    path.write_text(text)
    _same_times(formats.read_srt(path), WORDS, 3)


def test_vtt_round_trip(tmp_path):
    import webvtt

    words = [*WORDS, Interval("late", 3723.456, 3724.0)]  # past an hour: the HH field
    path = tmp_path / "a.vtt"
    path.write_text(formats.write_vtt(words))
    assert [c.text for c in webvtt.read(str(path)).captions] == ["the", "cat", "sat", "late"]
    _same_times(formats.read_vtt(path), words, 3)
    path.write_text("not a vtt\n")
    with pytest.raises(FormatError, match="a.vtt: not a readable WebVTT"):
        formats.read_vtt(path)


def test_rttm_from_speaker_onsets_round_trip(tmp_path):
    turns = formats.onset_turns([4.25, 0.5, 9.0], duration_s=12.0)
    assert [(t.label, t.start, t.end) for t in turns] == [("spk2", 0.5, 4.25), ("spk1", 4.25, 9.0),
                                                          ("spk3", 9.0, 12.0)]
    together = formats.onset_turns([1.0, 1.0, 3.0, 5.0], duration_s=5.0, labels=["a", "b", "c", "d"])
    assert [(t.label, t.start, t.end) for t in together] == [("a", 1.0, 3.0), ("b", 1.0, 3.0), ("c", 3.0, 5.0),
                                                             ("d", 5.0, 5.001)]  # overlap; never empty
    text = formats.write_rttm(turns, file_id="meeting1")
    assert text.splitlines()[0] == "SPEAKER meeting1 1 0.500 3.750 <NA> <NA> spk2 <NA> <NA>"
    path = tmp_path / "a.rttm"
    path.write_text(text + "SPKR-INFO meeting1 1 <NA> <NA> <NA> unknown spk1 <NA> <NA>\n")
    got = formats.read_rttm(path)
    _same_times(got["meeting1"], turns, 3)
    assert formats.speaker_onsets(got["meeting1"]) == {"spk2": 0.5, "spk1": 4.25, "spk3": 9.0}


def test_rttm_reader_takes_each_speakers_first_turn_and_names_bad_lines(tmp_path):
    path = tmp_path / "ref.rttm"
    path.write_text("SPEAKER f 1 3.0 1.0 <NA> <NA> B <NA> <NA>\n"
                    "SPEAKER f 1 1.0 1.5 <NA> <NA> A <NA> <NA>\n"
                    "SPEAKER f 1 2.0 0.5 <NA> <NA> A <NA> <NA>\n"
                    "SPEAKER g 1 0.2 0.5 <NA> <NA> C <NA> <NA>\n")
    got = formats.read_rttm(path)
    assert formats.speaker_onsets(got["f"]) == {"A": 1.0, "B": 3.0} and list(got) == ["f", "g"]
    path.write_text("SPEAKER f 1 -1.0 1.0 <NA> <NA> B <NA> <NA>\n")
    with pytest.raises(FormatError, match=r"ref\.rttm:1: onset '-1.0' must be a finite number >= 0"):
        formats.read_rttm(path)
    path.write_text("0.5 1.0 B\n")
    with pytest.raises(FormatError, match=r"ref\.rttm:1: not an RTTM line"):
        formats.read_rttm(path)


def _bursts(spans, seconds=2.0, sr=16000):
    """Tone bursts at ``spans`` (seconds) in silence: [N] float32."""
    out = np.zeros(int(seconds * sr), np.float32)
    for a, b in spans:
        t = np.arange(int(a * sr), int(b * sr))
        out[t] = 0.5 * np.sin(2 * np.pi * 220 * t / sr)
    return out


def test_word_ends_at_energy_offset_not_next_start():
    audio = _bursts([(0.1, 0.3), (0.5, 0.72), (1.0, 1.2)])
    assert energy_offsets(audio, [0.1, 0.5, 1.0], [0.5, 1.0, 2.0]) == [0.3, 0.72, 1.2]
    assert energy_offsets(audio, [0.1, 0.2], [0.2, 0.5]) == [0.2, 0.3]  # clamped to the next start
    assert energy_offsets(audio, [1.5], [2.0]) == [1.51]  # no loud window: one window long
    words = align_words(["a", "b", "c"], [1.0, 0.1, 0.5], audio, confidences=[0.3, 0.1, 0.2], ends="energy")
    assert [(w["word"], w["start"], w["end"], w["confidence"]) for w in words] == [
        ("a", 0.1, 0.3, 0.1), ("b", 0.5, 0.72, 0.2), ("c", 1.0, 1.2, 0.3)]
    plain = align_words(["a", "b", "c"], [0.1, 0.5, 1.0], audio)
    assert [w["end"] for w in plain] == [0.5, 1.0, 1.2] and "confidence" not in plain[0]


def test_poisson_confidence_is_intensity_mass_near_the_time():
    curve = torch.full((400,), -12.0)
    curve[100], curve[300] = 6.0, 6.0  # two sharp events, sub-frames of 10 ms
    pos = torch.tensor([100.5, 300.5, 200.5], dtype=torch.float64)
    assert event_confidences(curve, pos[:2], "poisson", tolerance_units=4) == pytest.approx([1.0, 1.0], abs=1e-4)
    assert event_confidences(curve, pos[:1], "poisson", tolerance_units=4)[0] == pytest.approx(0.5, abs=1e-4)
    # three decoded where the curve holds two: the one between the peaks has almost no mass
    three = event_confidences(curve, pos, "poisson", tolerance_units=4)
    assert three[0] == three[1] == 1.0 and three[2] < 0.01
    flat = event_confidences(torch.zeros(400), torch.tensor([200.5, 0.0], dtype=torch.float64), "poisson", 4)
    assert flat == pytest.approx([2 * 8 / 400, 2 * 4 / 400])  # a uniform curve: the window's share, clipped at 0
    assert event_confidences(curve, torch.zeros(0), "poisson", 4) == []


def test_binary_confidence_is_peak_probability():
    logits = torch.tensor([-3.0, 2.0, 0.0, -1.0])
    got = event_confidences(logits, torch.tensor([1.5, 2.5]), "binary", tolerance_units=4)
    assert got == pytest.approx([torch.sigmoid(torch.tensor(2.0)).item(), 0.5])
