"""Every PolyAudio task: the reference answer follows from the metadata (the rule judge gives it
5, a wrong answer less), items have 2-5 clips, and splits share no clip."""

import json

import numpy as np
import pytest

from framecall.polyaudio.bench import PolyConfig, generate_items, judge_item
from framecall.polyaudio.judges import RuleJudge, agreement, extract_answer
from framecall.polyaudio.tasks import GENERATORS


def _wrong(item):
    kind, ans = item["answer_type"], item["answer"]
    if kind == "index":
        return f"<answer>Audio {ans['index'] % 5 + 1 if ans['index'] != 5 else 1}</answer>"
    if kind == "number":
        return f"<answer>{float(ans['value']) + 3}</answer>"
    if kind == "clip_time":
        return f"<answer>Audio {ans['index'] + 1} at {ans['time']:.2f} s</answer>"
    if kind == "set":
        return "<answer>Audio 9</answer>"
    if kind == "sequence":
        return "<answer>" + ", ".join(f"Audio {i}" for i in reversed(ans["values"])) + "</answer>"
    if kind == "yesno":
        return "<answer>" + ("no" if ans["value"] == "yes" else "yes") + "</answer>"
    if kind == "text":
        return "<answer>nothing</answer>"
    return "<answer>silence</answer>"  # caption


@pytest.fixture(scope="module")
def items():
    return {split: list(generate_items(PolyConfig(split=split, per_task=4, seed=1))) for split in ("train", "bench")}


def test_every_task_reference_scores_5_and_a_wrong_answer_less(items):
    judge = RuleJudge()
    seen = set()
    for row in items["bench"]:
        item = judge_item(row)
        seen.add(item["task"])
        ref = judge.score(item, f"<answer>{item['reference']}</answer>")
        assert ref.score == 5.0, (item, ref)
        wrong = _wrong(item)
        if item["answer_type"] == "sequence" and len(item["answer"]["values"]) < 2:
            continue
        assert judge.score(item, wrong).score < 5.0, (item, wrong)
    assert seen == set(GENERATORS) and len(GENERATORS) == 11


def test_items_are_balanced_over_2_to_5_clips_and_well_formed(items):
    from framecall.data.schema import check_row

    counts = {}
    for row in items["bench"]:
        check_row(row, row["id"])
        meta = json.loads(row["meta"])
        assert 2 <= len(row["clips"]) == meta["num_clips"] <= 5
        counts.setdefault(row["task"], []).append(len(row["clips"]))
        assert row["target_text"] == f"<answer>{row['answer']}</answer>"
        if row["task"] == "poly_temporal_grounding":  # the onset in the concatenated timeline
            k = meta["answer"]["index"] - 1
            assert row["event_times_s"] == [pytest.approx(meta["clip_offsets_s"][k] + meta["answer"]["time"], abs=1e-3)]
    for task, ns in counts.items():
        if task != "poly_odd_one_out":  # odd-one-out needs 3 clips at least
            assert sorted(ns) == [2, 3, 4, 5], task


def test_splits_share_no_clip_and_regenerate_identically(items):
    ids = {s: {c for r in rows for c in json.loads(r["meta"])["clip_ids"]} for s, rows in items.items()}
    digests = {s: {c for r in rows for c in json.loads(r["meta"])["clip_digests"]} for s, rows in items.items()}
    assert not ids["train"] & ids["bench"] and not digests["train"] & digests["bench"]
    again = list(generate_items(PolyConfig(split="bench", per_task=4, seed=1, tasks=["counting"])))
    first = [r for r in items["bench"] if r["task"] == "poly_counting"]
    assert [r["meta"] for r in again] == [r["meta"] for r in first]  # one task regenerates alone, identically


def test_questions_are_paraphrased():
    rows = list(generate_items(PolyConfig(split="bench", per_task=12, seed=2, tasks=["needle_qa", "counting"])))
    for task in ("poly_needle_qa", "poly_counting"):
        stems = {r["prompt"].split()[0] + " " + r["prompt"].split()[1] for r in rows if r["task"] == task}
        assert len(stems) >= 2, stems


def test_rule_judge_parsing_and_agreement():
    item = {"answer_type": "clip_time", "answer": {"index": 2, "time": 1.5}}
    assert RuleJudge().score(item, "It is in <answer>Audio 2 at 1.6 s</answer>").score == 5.0
    assert RuleJudge().score(item, "<answer>Audio 2 at 2.4 s</answer>").score == 4.0
    assert RuleJudge().score(item, "<answer>Audio 1 at 1.5 s</answer>").score == 1.0
    assert extract_answer("thinking... <answer> yes </answer>") == "yes"
    seq = {"answer_type": "sequence", "answer": {"values": [2, 1, 3]}}
    assert RuleJudge().score(seq, "Audio 2, Audio 3, Audio 1").score == pytest.approx(1 + 3 * 2 / 3)
    a = agreement([1, 2, 3, 4, None], [1, 3, 2, 5, 4])
    assert a["items"] == 4 and 0 < a["spearman_rho"] < 1 and np.isfinite(a["kendall_tau"])
