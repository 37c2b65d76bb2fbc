"""Single-audio retention (PolyAudio Table 7): the same single-clip questions asked before SFT,
after SFT and after GRPO, so multi-audio training is seen not to cost single-clip skill.

Questions come from the platform's own synthetic event corpus, asked in text form with the
multi-audio answer format: how many sound events the clip holds (a number) and which event
comes first (a label). Scored by the rule judge, as the bench is.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from framecall.prompts import answer_text

QUESTIONS = {
    "count": "How many sound events are in this clip?",
    "first": "Which sound event comes first in this clip?",
}


def retention_items(num: int = 40, seed: int = 0) -> list[dict[str, Any]]:
    """``num`` single-clip items (half count, half first-event questions) in the SFT/GRPO item form."""
    from framecall.data.synthetic import SynthConfig, generate

    items = []
    for k, row in enumerate(generate(SynthConfig(task="events", num=num, seed=seed, max_seconds=6.0))):
        events = json.loads(row["meta"])["events"]
        kind = "count" if k % 2 == 0 else "first"
        if kind == "count":
            answer, judge = str(len(events)), {"answer_type": "number", "answer": {"value": len(events)}}
        else:
            first = min(events, key=lambda e: e["onset_s"])["label"]
            answer, judge = first, {"answer_type": "text", "answer": {"value": first}}
        items.append({"id": f"retention-{kind}-{k}", "prompt": QUESTIONS[kind], "target_text": answer_text(answer),
                      "clips": [row["audio"]],
                      "judge": {"id": row["id"], "task": f"single_{kind}", "question": QUESTIONS[kind],
                                "reference": answer, **judge}})
    return items


def evaluate_retention(backbone, items: list[dict[str, Any]], batch_size: int = 8,
                       max_new_tokens: int = 16) -> dict[str, float]:
    """Greedy answers of ``backbone`` to ``items`` -> mean rule-judge score (1-5) per question kind and overall."""
    from framecall.polyaudio.judges import RuleJudge
    from framecall.train.grpo.data import featurize_clips

    judge, by_kind = RuleJudge(), {}
    for start in range(0, len(items), batch_size):
        part = items[start:start + batch_size]
        answers = backbone.generate_multi([it["prompt"] for it in part], [featurize_clips(backbone, it) for it in part],
                                          max_new_tokens=max_new_tokens)
        for it, answer in zip(part, answers):
            by_kind.setdefault(it["judge"]["task"], []).append(judge.score(it["judge"], answer).score)
    out = {kind: float(np.mean(v)) for kind, v in sorted(by_kind.items())}
    out["overall"] = float(np.mean(list(out.values())))
    return out
