"""Frame-level grounding across clips: PolyAudio items as frame rows over the joined clips, answered and
scored per clip count."""

import json

import pytest

from framecall.polyaudio.grounding import (
    accuracy_by_clips, clip_and_time, convert, frame_row, grounding_table, score_frame_answers,
)
from tests_helpers import make_checkpoint


@pytest.fixture(scope="module")
def poly_dirs(tmp_path_factory):
    from framecall.data.shards import ShardWriter
    from framecall.polyaudio.bench import PolyConfig, generate_items

    root = tmp_path_factory.mktemp("grounding")
    for split, per_task in (("train", 4), ("bench", 8)):
        cfg = PolyConfig(split=split, per_task=per_task, seed=3, tasks=["temporal_grounding", "counting", "comparison"])
        with ShardWriter(root / split) as w:
            w.write_all(generate_items(cfg))
    return root


def _rows(path):
    from framecall.data.shards import list_shards, read_shard

    return [r for p in list_shards(path) for r in read_shard(p).to_pylist()]


def test_frame_rows_hold_the_asked_onsets_in_the_joined_audio(poly_dirs):
    for row in _rows(poly_dirs / "bench"):
        meta = json.loads(row["meta"])
        if meta["task"] == "comparison":
            with pytest.raises(ValueError, match=f"row '{row['id']}'.*'comparison' has no frame form"):
                frame_row(row)
            continue
        out = frame_row(row)
        assert out["clips"] == [] and out["audio"] == row["audio"] and out["num_events"] == len(out["event_times_s"])
        offsets, durations = meta["clip_offsets_s"], json.loads(out["meta"])["clip_durations_s"]
        if meta["task"] == "temporal_grounding":
            (t,) = out["event_times_s"]
            assert clip_and_time(t, offsets, durations) == pytest.approx((meta["answer"]["index"], meta["answer"]["time"]),
                                                                         abs=1e-3)
        else:  # every onset of the asked label, each inside a clip that holds that label at that time
            assert len(out["event_times_s"]) == meta["answer"]["value"]
            for t in out["event_times_s"]:
                k, at = clip_and_time(t, offsets, durations)
                clip = row["clips"][k - 1]
                assert meta["evidence"]["label"] in [lab for lab, s in zip(clip["labels"], clip["event_times_s"])
                                                      if abs(s - at) < 1e-3]


def test_a_time_in_a_gap_goes_to_the_nearest_clip():
    offsets, durations = [0.0, 4.5, 9.0], [2.5, 2.5, 2.5]  # gaps 2.5-4.5 and 7.0-9.0
    assert clip_and_time(1.0, offsets, durations) == (1, 1.0)
    assert clip_and_time(3.0, offsets, durations) == (1, 2.5)  # 0.5 s past clip 1, 1.5 s before clip 2
    assert clip_and_time(8.5, offsets, durations) == (3, 0.0)
    assert clip_and_time(20.0, offsets, durations) == (3, 2.5)


def test_converted_bench_is_answered_and_scored_per_clip_count(poly_dirs, tmp_path):
    data = convert(poly_dirs / "train", tmp_path / "frame", test_dir=poly_dirs / "bench", val_every=4)
    manifest = json.loads((data / "_manifest.json").read_text())
    assert manifest["counts"] == {"clip_counting": {"train": 3, "val": 1, "test": 8},
                                  "clip_grounding": {"train": 3, "val": 1, "test": 8}}  # comparison left out
    ckpt = make_checkpoint(tmp_path / "ckpt", ["clip_grounding", "clip_counting"])
    records = score_frame_answers(ckpt, data)
    assert len(records) == 16 and {r["clips"] for r in records} == {2, 3, 4, 5}
    grounding = [r for r in records if r["task"] == "clip_grounding"]
    assert all(1 <= r["pred"]["index"] <= r["clips"] and r["pred"]["time"] >= 0 for r in grounding)
    counting = [r for r in records if r["task"] == "clip_counting"]
    assert all(isinstance(r["pred"], int) and r["exact"] == (r["pred"] == r["gold"]) for r in counting)
    by = accuracy_by_clips(records, "clip_right")
    assert sum(n for _, n in by.values()) == 8
    table = grounding_table({"frame: right clip": (records, "clip_right"), "frame: exact count": (records, "exact")})
    assert table.splitlines()[0] == "| model / measure | 2 clips | 3 clips | 4 clips | 5 clips | all |"
    assert "| frame: exact count |" in table and table.count("(8)") == 2  # the "all" cells
    with pytest.raises(ValueError, match="no rows in split 'val2'"):
        score_frame_answers(ckpt, data, split="val2")


def test_rule_verdicts_of_a_text_model_map_to_the_same_measures():
    from framecall.polyaudio.grounding import from_rule_verdicts

    records = [{"id": "g1", "task": "temporal_grounding", "score_rule": 5.0},
               {"id": "g2", "task": "temporal_grounding", "score_rule": 3.0},  # right clip, time off
               {"id": "g3", "task": "temporal_grounding", "score_rule": 1.0},
               {"id": "c1", "task": "counting", "score_rule": 2.0},  # off by one
               {"id": "x", "task": "comparison", "score_rule": 5.0}]
    out = from_rule_verdicts(records, {"g1": 2, "g2": 3, "g3": 3, "c1": 5, "x": 2})
    assert [(r["id"], r["clips"]) for r in out] == [("g1", 2), ("g2", 3), ("g3", 3), ("c1", 5)]
    assert [r.get("clip_right") for r in out[:3]] == [True, True, False]
    assert [r.get("within_0.5s") for r in out[:3]] == [True, False, False]
    assert (out[3]["exact"], out[3]["within_1"]) == (False, True)
