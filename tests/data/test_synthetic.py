import json

import numpy as np
import pytest

from framecall.audio.io import decode_audio
from framecall.data.synthetic import SynthConfig, WindowUnreachable, generate, generate_item
from framecall.prompts import ordinal


@pytest.mark.parametrize("task", ["words", "words_all", "speakers", "events"])
def test_deterministic_and_consistent(task):
    cfg = SynthConfig(task=task, num=6, seed=7)
    a, b = list(generate(cfg)), list(generate(cfg))
    # labels, text and lengths do not depend on what espeak spoke before (see audio.espeak)
    keys = ("id", "split", "prompt", "target_text", "event_times_s", "duration_s", "meta")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    other = generate_item(SynthConfig(task=task, num=1, seed=8), 0)
    assert other["prompt"] != a[0]["prompt"] or other["event_times_s"] != a[0]["event_times_s"]
    for row in a:
        samples, sr = decode_audio(row["audio"])
        assert sr == 16000 and abs(samples.size / sr - row["duration_s"]) < 1e-3
        assert cfg.min_seconds - 1e-3 <= row["duration_s"] <= cfg.max_seconds + 1e-3
        times = row["event_times_s"]
        assert row["num_events"] == len(times) >= 1 and times == sorted(times)
        assert all(0 <= t <= row["duration_s"] for t in times)
        target = json.loads(row["target_text"])
        if task == "words_all":
            assert target == [round(t, 2) for t in times]
            assert row["prompt"].startswith("Transcript: ") and row["query_index"] is None
        else:
            assert len(target) == 1 and target[0]["start"] == round(times[0], 2)
            assert row["query_index"] >= 1 and row["answer"] == f"{times[0]:.2f}"


def test_words_question_names_the_kth_occurrence():
    for row in generate(SynthConfig(task="words", num=30, seed=2, min_seconds=4, max_seconds=6)):
        meta = json.loads(row["meta"])
        word = json.loads(row["target_text"])[0]["word"]
        occurrences = [t for w, t in meta["words"] if w == word]
        assert row["prompt"] == f"When does the {ordinal(row['query_index'])} occurrence of the word '{word}' occur?"
        assert occurrences[row["query_index"] - 1] == pytest.approx(row["event_times_s"][0], abs=1e-3)


def test_speakers_and_events_answers_follow_meta():
    for row in generate(SynthConfig(task="speakers", num=10, seed=1, max_seconds=8)):
        meta = json.loads(row["meta"])
        onsets = [s["onset_s"] for s in meta["speakers"]]
        assert onsets == sorted(onsets) and len(onsets) == meta["num_speakers"]
        assert onsets[row["query_index"] - 1] == pytest.approx(row["event_times_s"][0], abs=1e-3)
        assert len({s["voice"] for s in meta["speakers"]}) == len(onsets)  # distinct voices
    for row in generate(SynthConfig(task="events", num=10, seed=1)):
        meta = json.loads(row["meta"])
        label = json.loads(row["target_text"])[0]["event"]
        onsets = [e["onset_s"] for e in meta["events"] if e["label"] == label]
        assert onsets[row["query_index"] - 1] == pytest.approx(row["event_times_s"][0], abs=1e-4)


def test_event_onsets_are_exact_in_the_audio():
    cfg = SynthConfig(task="events", num=5, seed=4, snr_db=60.0)
    for row in generate(cfg):
        x, sr = decode_audio(row["audio"])
        for e in json.loads(row["meta"])["events"]:
            i = int(round(e["onset_s"] * sr))
            assert np.abs(x[max(0, i - 40) : i - 8]).max() < 0.01  # silence (noise floor) before
            assert np.abs(x[i : i + 160]).max() > 0.02  # sound within 10 ms after


@pytest.mark.parametrize("window", [(0.0, 4.0), (4.0, 8.0)])
def test_answer_window_restricts_questions_not_clip_length(window):
    for task in ("words", "speakers", "events"):
        rows = list(generate(SynthConfig(task=task, num=8, seed=5, min_seconds=8, max_seconds=8,
                                         answer_window=window)))
        for row in rows:
            assert window[0] <= row["event_times_s"][0] <= window[1]
            assert row["duration_s"] == pytest.approx(8.0, abs=1e-3)
    for row in generate(SynthConfig(task="words_all", num=4, seed=5, min_seconds=8, max_seconds=8,
                                    answer_window=window)):
        assert all(window[0] <= t <= window[1] for t in row["event_times_s"])


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="task"):
        SynthConfig(task="music")
    with pytest.raises(ValueError, match="answer_window starts at 9"):
        SynthConfig(task="words", max_seconds=5, answer_window=(9, 12))
    with pytest.raises(ValueError, match="min_seconds"):
        SynthConfig(min_seconds=3, max_seconds=2)
    with pytest.raises(WindowUnreachable, match="widen the window"):
        generate_item(SynthConfig(task="events", min_seconds=1.0, max_seconds=1.2, answer_window=(1.15, 1.2)), 0)
