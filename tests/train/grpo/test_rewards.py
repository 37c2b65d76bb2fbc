import pytest

from framecall.polyaudio.clips import CITIES, KEYWORDS, NAMES
from framecall.polyaudio.judges import RuleJudge
from framecall.train.grpo.rewards import (
    DEFAULT_REWARD_WEIGHTS,
    REWARDS,
    answer_block,
    combine_rewards,
    get_reward,
)

# items as framecall.polyaudio.bench.judge_item builds them, answers as the generators in tasks.py write them
INDEX = {"answer_type": "index", "answer": {"index": 2}, "reference": "Audio 2"}
CLIP_TIME = {"answer_type": "clip_time", "answer": {"index": 2, "time": 1.23}, "reference": "Audio 2 at 1.23 s"}
SET = {"answer_type": "set", "answer": {"values": [2, 4]}, "reference": "Audio 2, Audio 4"}
SEQUENCE = {"answer_type": "sequence", "answer": {"values": [3, 1, 2]}, "reference": "Audio 3, Audio 1, Audio 2"}
NUMBER = {"answer_type": "number", "answer": {"value": 34}, "reference": "34"}
YESNO = {"answer_type": "yesno", "answer": {"value": "no"}, "reference": "no"}
CITY = {"answer_type": "text", "answer": {"value": "Paris"}, "reference": "Paris"}
KEYWORD = {"answer_type": "text", "answer": {"value": "river"}, "reference": "river"}
CAPTION = {"answer_type": "caption", "answer": {"terms": ["Anna", "Paris"]},
           "reference": "Anna says they live in Paris"}
CAPTION_ALL = {"answer_type": "caption", "answer": {"terms": ["Anna", "Paris", "tone", "chirp", "Ben", "Rome"]},
               "reference": "Audio 1: Anna says they live in Paris; Audio 2: sounds: tone, chirp; "
                            "Audio 3: Ben says they live in Rome"}

TOTAL = combine_rewards(DEFAULT_REWARD_WEIGHTS)

CORRECT = [  # (item, answer block content): the rule judge's 5
    (INDEX, "Audio 2"), (CLIP_TIME, "Audio 2 at 1.40 s"), (SET, "Audio 4 and Audio 2"),
    (SEQUENCE, "Audio 3, Audio 1, Audio 2"), (NUMBER, "34"), (YESNO, "No."), (CITY, "Paris"),
    (KEYWORD, "river"), (CAPTION, "Anna says she lives in Paris."), (CAPTION_ALL, CAPTION_ALL["reference"]),
]
WRONG = [  # the rule judge's 1
    (INDEX, "Audio 3"), (CLIP_TIME, "Audio 1 at 1.23 s"), (SET, "Audio 3"), (SEQUENCE, "Audio 1, Audio 2"),
    (NUMBER, "36"), (YESNO, "yes"), (CITY, "London"), (KEYWORD, "garden"), (CAPTION, "Ben lives in Rome"),
    (CAPTION_ALL, "a dog barks"),
]


@pytest.mark.parametrize("item,answer", CORRECT, ids=lambda x: x["answer_type"] if isinstance(x, dict) else "")
def test_well_formed_correct_answer_scores_high(item, answer):
    """Reasoning before the block is allowed; 0.8 * 1 + 0.2 * 1 = 1.0 for every answer type."""
    total, parts = TOTAL(item, f"The clips say so.\n<answer>{answer}</answer>\n")
    assert total >= 0.95 and parts == {"accuracy": 1.0, "format": 1.0}
    assert get_reward("exact")(item, f"<answer>{answer}</answer>") == 1.0


@pytest.mark.parametrize("item,answer", WRONG, ids=lambda x: x["answer_type"] if isinstance(x, dict) else "")
def test_well_formed_wrong_answer_gets_only_the_format_part(item, answer):
    total, parts = TOTAL(item, f"<answer>{answer}</answer>")
    assert parts == {"accuracy": 0.0, "format": 1.0} and total == pytest.approx(0.2)


def test_partial_credit_kept_and_exact_is_all_or_nothing():
    """set {2} vs {2, 4}: jaccard 1/2 -> judge 1 + 4 * 0.5 = 3 -> accuracy (3 - 1) / 4 = 0.5.
    sequence [1, 3, 2] vs [3, 1, 2]: pairs (3,1) wrong, (3,2) and (1,2) right -> 1 + 3 * 2/3 = 3 -> 0.5.
    clip_time right clip, time off by 0.77 s (<= 1.5 s) -> 4 -> 0.75; number off by 1 -> 2 -> 0.25.
    NeMo-RL's weights {exact 0.8, format 0.2} give each of them 0.2."""
    nemo = combine_rewards({"exact": 0.8, "format": 0.2})
    for item, answer, acc in [(SET, "Audio 2", 0.5), (SEQUENCE, "Audio 1, Audio 3, Audio 2", 0.5),
                              (CLIP_TIME, "Audio 2 at 2.00 s", 0.75), (NUMBER, "35", 0.25)]:
        completion = f"<answer>{answer}</answer>"
        assert get_reward("accuracy")(item, completion) == pytest.approx(acc)
        assert nemo(item, completion)[0] == pytest.approx(0.2)


HACKS = [  # (item, completion, what the bare rule judge gives the same text, 1..5)
    (INDEX, "<answer>Audio 2 or Audio 1 or Audio 3</answer>", 5.0),  # judge takes the first index
    (SET, "<answer>Audio 1, Audio 2, Audio 3, Audio 4</answer>", 3.0),  # every clip: jaccard 1/2
    (SET, "<answer>Audio 2, Audio 3, Audio 4</answer>", 3.7),  # a superset: jaccard 2/3
    (YESNO, "<answer>no or yes</answer>", 5.0),  # judge takes the first yes/no word
    (NUMBER, "<answer>34, 35 or 36</answer>", 5.0),  # judge takes the first number
    (CLIP_TIME, "<answer>Audio 2 at 1.0 s or 1.2 s or 1.4 s</answer>", 5.0),
    (KEYWORD, f"<answer>{' '.join(KEYWORDS)}</answer>", 4.0),  # every keyword: "contained"
    (CITY, "<answer>Paris or London</answer>", 4.0),
    (CAPTION, f"<answer>{' '.join(NAMES + CITIES)}</answer>", 5.0),  # recall 1 by stuffing every name and city
    (CAPTION, "<answer>Anna Ben Paris Rome</answer>", 5.0),  # short, but more candidates than key terms
    (CAPTION, "<answer>Anna Anna Anna Paris Paris Paris</answer>", 5.0),  # repeated key terms
    (CAPTION_ALL, "<answer>" + "; ".join([CAPTION_ALL["reference"]] * 2) + "</answer>", 5.0),
    (INDEX, "<answer>Audio 2</answer><answer>Audio 2</answer>", 5.0),  # two answer blocks
    (INDEX, "<answer>Audio 2 <answer>Audio 2</answer></answer>", 5.0),  # nested
    (INDEX, "I think <answer>Audio 2", 5.0),  # missing closing tag
    (INDEX, "<answer>Audio 2</answer> or maybe Audio 3", 5.0),  # text after the block
    (INDEX, "Audio 2", 5.0),  # no block at all
    (INDEX, "<answer></answer>", 1.0),
    (INDEX, "<answer>   </answer>", 1.0),
    (CAPTION, "<answer>...</answer>", 1.0),  # empty in words: recall 0 (terms are there to find)
]


@pytest.mark.parametrize("item,completion,judge_alone", HACKS)
def test_hacks_do_not_pay(item, completion, judge_alone):
    """Each scores at most 0.2 under the default weights (the format part at most), while the rule
    judge on its own gives most of them partial or full credit: the guards are what stops them."""
    total, parts = TOTAL(item, completion)
    assert parts["accuracy"] == 0.0 and total <= 0.2
    assert RuleJudge().score(item, completion).score == pytest.approx(judge_alone, abs=0.05)


def test_answer_block_rules():
    assert answer_block("think first <answer> Audio 2 </answer>  \n") == "Audio 2"
    assert answer_block("<ANSWER>yes</Answer>") == "yes"  # tags case-insensitive, like the judge
    for bad in ["<answer>a</answer><answer>b</answer>", "<answer>a", "a</answer>", "</answer>a<answer>",
                "<answer> </answer>", "<answer>a</answer>b", "<answer><answer>a</answer>", "plain text"]:
        assert answer_block(bad) is None, bad
        assert get_reward("format")({}, bad) == 0.0


def test_reference_answers_are_not_mistaken_for_stuffing():
    """The free-text limit is max(3 x key-term words, 12, 1.5 x reference words): for CAPTION_ALL
    6 terms -> 18 words, reference 21 words -> 31; the reference itself (21 words) passes, twice (42) not."""
    assert get_reward("accuracy")(CAPTION_ALL, f"<answer>{CAPTION_ALL['reference']}</answer>") == 1.0
    assert get_reward("accuracy")(CAPTION, "<answer>Anna says that Anna lives in Paris</answer>") == 1.0
    assert get_reward("accuracy")(NUMBER, "<answer>34 years old</answer>") == 1.0


def test_combine_rewards_checks_names_and_weights():
    assert set(REWARDS) == {"accuracy", "exact", "format"}
    with pytest.raises(ValueError, match=r"unknown reward 'length'; valid: \['accuracy', 'exact', 'format'\]"):
        combine_rewards({"accuracy": 1.0, "length": 0.1})
    with pytest.raises(ValueError, match="no rewards given"):
        combine_rewards({})
    with pytest.raises(ValueError, match="finite"):
        combine_rewards({"format": float("nan")})
    with pytest.raises(ValueError, match="unknown answer type 'essay'"):
        get_reward("accuracy")({"answer_type": "essay", "answer": {}}, "<answer>x</answer>")
