"""Single-audio retention items and their evaluation."""

import json

from framecall.models.backbone import load_backbone
from framecall.polyaudio.judges import RuleJudge
from framecall.train.grpo.retention import evaluate_retention, retention_items


def test_items_hold_the_corpus_answers_and_score_on_the_bench_scale():
    items = retention_items(num=6, seed=2)
    assert [it["judge"]["task"] for it in items] == ["single_count", "single_first"] * 3
    judge = RuleJudge()
    for it in items:  # the supervised answer is what the judge calls right
        assert judge.score(it["judge"], it["target_text"]).score == 5.0
        assert len(it["clips"]) == 1
    scores = evaluate_retention(load_backbone("tiny-omni"), items, max_new_tokens=6)
    assert set(scores) == {"single_count", "single_first", "overall"}
    assert all(1.0 <= v <= 5.0 for v in scores.values())
    assert json.dumps(scores)  # plain floats, loggable
