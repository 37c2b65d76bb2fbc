"""Result dataclasses of the Python API, and the README's Python quick start run as written."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from framecall import formats
from framecall.inference import FrameLocalizer, QueryError
from framecall.results import Alignment, Localization, WordTiming
from tests_helpers import make_checkpoint, speech_clip, wav_bytes

README = Path(__file__).resolve().parents[1] / "README.md"


def test_localization_writers(tmp_path):
    loc = Localization("When does the 1st speaker start speaking?", [4.25, 0.5], [0.9, 0.4], "speakers",
                       duration_s=10.0, count_estimate=2.1, tolerance_s=0.04)
    assert json.loads(loc.to_json())["num_events"] == 2 and loc.to_dict()["confidences"] == [0.9, 0.4]
    (tmp_path / "a.rttm").write_text(loc.to_rttm(file_id="m1"))
    turns = formats.read_rttm(tmp_path / "a.rttm")["m1"]
    assert [(t.label, t.start, t.end) for t in turns] == [("spk2", 0.5, 4.25), ("spk1", 4.25, 10.0)]
    (tmp_path / "a.TextGrid").write_text(loc.to_textgrid())
    from praatio import textgrid

    points = textgrid.openTextgrid(str(tmp_path / "a.TextGrid"), includeEmptyIntervals=False).getTier("events")
    assert [(p.time, p.label) for p in points.entries] == [(0.5, "speakers"), (4.25, "speakers")]
    with pytest.raises(ValueError, match="2 times but 1 confidences"):
        Localization("q", [1.0, 2.0], [0.5])


def test_alignment_writers(tmp_path):
    words = Alignment("the cat", [WordTiming("the", 0.1, 0.3, 0.8), WordTiming("cat", 0.5, 0.9, 0.6)], 1.2)
    assert json.loads(words.to_json())["words"][1] == {"word": "cat", "start": 0.5, "end": 0.9, "confidence": 0.6}
    (tmp_path / "a.ctm").write_text(words.to_ctm(utterance="u1"))
    assert [(w.label, w.start, round(w.end, 3), w.confidence) for w in formats.read_ctm(tmp_path / "a.ctm")["u1"]] \
        == [("the", 0.1, 0.3, 0.8), ("cat", 0.5, 0.9, 0.6)]
    for ext, write, read in [("srt", words.to_srt, formats.read_srt), ("vtt", words.to_vtt, formats.read_vtt),
                             ("TextGrid", words.to_textgrid, formats.read_textgrid)]:
        (tmp_path / f"a.{ext}").write_text(write())
        assert [(w.label, w.start, w.end) for w in read(tmp_path / f"a.{ext}")] == [("the", 0.1, 0.3),
                                                                                   ("cat", 0.5, 0.9)], ext


def test_api_on_array_file_and_bytes(tmp_path):
    loc = FrameLocalizer.from_pretrained(make_checkpoint(tmp_path / "ckpt", ["words", "words_all"]))
    audio, spoken = speech_clip("the cat sat on the mat")
    (tmp_path / "talk.wav").write_bytes(wav_bytes(audio))
    question = "When does the 1st occurrence of the word 'cat' occur?"
    answers = [loc.localize(a, question, num_events=2) for a in (audio, tmp_path / "talk.wav", wav_bytes(audio))]
    assert answers[0].times_s == answers[1].times_s == answers[2].times_s and answers[0].task == "words"
    assert len(answers[0].confidences) == 2 and all(0 <= c <= 1 for c in answers[0].confidences)
    assert answers[0].tolerance_s == 0.04 and answers[0].model["name"] == "ckpt"
    aligned = loc.align(str(tmp_path / "talk.wav"), " ".join(spoken))
    assert [w.word for w in aligned.words] == spoken and aligned.duration_s == pytest.approx(audio.size / 16000)
    assert all(0 <= w.confidence <= 1 and w.start <= w.end for w in aligned.words)
    assert all(a.end <= b.start for a, b in zip(aligned.words, aligned.words[1:]))
    with pytest.raises(QueryError, match="transcript: transcript has no words"):
        loc.align(audio, "  ")
    with pytest.raises(ValueError, match="mono array"):
        loc.localize(np.zeros((2, 8000), np.float32), question, num_events=1)
    from framecall.audio.io import AudioError

    with pytest.raises(AudioError, match="missing.wav"):
        loc.localize(tmp_path / "missing.wav", question, num_events=1)


def readme_quick_start() -> str:
    section = README.read_text().split("## Quick start in Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_quick_start_runs_as_written(tmp_path, monkeypatch):
    make_checkpoint(tmp_path / "runs" / "train_poisson" / "best", ["words_all"])  # what make train trains
    make_checkpoint(tmp_path / "runs" / "multi" / "best", ["words", "speakers"])
    audio, _ = speech_clip("the cat sat on the mat")
    (tmp_path / "talk.wav").write_bytes(wav_bytes(audio))
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_quick_start(), "README.md quick start", "exec"), {})
    words = formats.read_textgrid(tmp_path / "talk.TextGrid")
    assert [w.label for w in words] == "the cat sat on the mat".split()
    assert [w.label for w in formats.read_srt(tmp_path / "talk.srt")] == [w.label for w in words]
    assert [round(w.start, 3) for w in formats.read_ctm(tmp_path / "talk.ctm")["talk"]] == \
        [round(w.start, 3) for w in words]
    turns = formats.read_rttm(tmp_path / "talk.rttm")["talk"]
    assert len(turns) == 2 and turns[-1].end == pytest.approx(audio.size / 16000, abs=1e-3)
