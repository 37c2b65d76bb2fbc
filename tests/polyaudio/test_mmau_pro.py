"""MMAU-Pro loader on a tiny fixture written in the release's layout, and the offline metric."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from framecall.polyaudio.mmau_pro import (
    METRIC_LABEL, MMAUProError, choice_accuracy, load_mmau_pro, match_choice, prompt_with_choices,
)
from tests_helpers import wav_bytes


@pytest.fixture
def release(tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        (tmp_path / "data" / name).write_bytes(wav_bytes(np.zeros(1600, np.float32)))
    rows = [
        {"id": "m1", "audio_path": ["./data/a.wav", "./data/b.wav"], "question": "Which clip has a dog?",
         "choices": ["the first", "the second"], "answer": "the second", "category": "sound",
         "task_identifier": "multi_audio", "perceptual_skills": ["x"], "reasoning_skills": ["y"], "sub-cat": "z"},
        {"id": "m2", "audio_path": ["./data/a.wav"], "question": "Single?", "choices": ["yes", "no"],
         "answer": "yes", "category": "speech", "task_identifier": "single", "perceptual_skills": [],
         "reasoning_skills": [], "sub-cat": ""},
        {"id": "m3", "audio_path": ["./data/b.wav", "./data/c.wav"], "question": "Describe both.", "choices": [],
         "answer": "two silences", "category": "sound", "task_identifier": "multi_audio", "perceptual_skills": [],
         "reasoning_skills": [], "sub-cat": ""},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    return tmp_path


def test_loads_the_multi_audio_subset(release):
    items = load_mmau_pro(release)
    assert [it["id"] for it in items] == ["m1", "m3"]
    assert all(len(it["audio_paths"]) == 2 and it["audio_paths"][0].endswith(".wav") for it in items)
    assert "(B) the second" in prompt_with_choices(items[0])
    assert len(load_mmau_pro(release, multi_audio_only=False)) == 3


def test_missing_audio_is_named(release):
    (release / "data" / "c.wav").unlink()
    with pytest.raises(MMAUProError, match=r"row 2 \(id=m3\): audio file\(s\) not found"):
        load_mmau_pro(release)


def test_choice_matching_metric(release):
    items = load_mmau_pro(release)
    assert match_choice("<answer>(B)</answer>", items[0]["choices"]) == "the second"
    assert match_choice("I think it is the first one", items[0]["choices"]) == "the first"
    acc = choice_accuracy(items, ["B", "whatever"])
    assert acc == {"metric": METRIC_LABEL, "closed_items": 1, "open_items": 1, "accuracy": 1.0}
    assert choice_accuracy(items, ["A", ""])["accuracy"] == 0.0
    assert choice_accuracy(items, ["A", ""], official_scorer=lambda it, r: True)["metric"] == "official"
