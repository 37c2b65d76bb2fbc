"""GRPO rewards: pure functions ``(item, completion) -> float`` in [0, 1], registered by name and
combined with weights from the config (:func:`combine_rewards`).

``item`` is a PolyAudio item as the judges take it (``answer_type``, ``answer``, ``reference``; see
:func:`framecall.polyaudio.bench.judge_item`); ``completion`` is the decoded model output, which must
end with exactly one ``<answer>...</answer>`` block (R1-AQA's format).

Guards, so that hacks a policy finds quickly do not pay (the rule judge alone gives partial credit to
some of them): only a single well-formed answer block is judged; an empty answer scores 0; an answer
naming more candidates than the reference needs ("Audio 1 or Audio 2", every clip for a set, "yes or
no", two numbers, two times, several cities) scores 0; a free-text answer much longer than its key
terms, or repeating a key term, scores 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from framecall.audio.events import EVENT_GENERATORS
from framecall.polyaudio.clips import CITIES, KEYWORDS, NAMES
from framecall.polyaudio.judges import RuleJudge, _indices, _words

RewardFn = Callable[[dict[str, Any], str], float]
REWARDS: dict[str, RewardFn] = {}

# NeMo-RL's audio GRPO recipe (Qwen2.5-Omni-3B): reward = 0.8 exact + 0.2 format. With the rule
# judge, "accuracy" keeps partial credit (set overlap, pairs in order, close times); use
# {"exact": 0.8, "format": 0.2} for NeMo-RL's all-or-nothing variant.
DEFAULT_REWARD_WEIGHTS: dict[str, float] = {"accuracy": 0.8, "format": 0.2}

_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?")  # as the judge reads numbers and times
_CLIP_MENTION = re.compile(r"(?:audio|clip)\s*#?\s*\d+", re.IGNORECASE)  # what the judge strips before reading times
_JUDGE = RuleJudge()  # guards parse with its _indices/_words, so they count exactly what it scores
_YES, _NO = {"yes", "true"}, {"no", "false"}
# the synthetic corpus's closed vocabularies: naming a second member is hedging
_TEXT_VOCABULARIES = (CITIES, KEYWORDS, NAMES)
_CAPTION_CANDIDATES = (*NAMES, *CITIES, *EVENT_GENERATORS)
_MIN_FREE_TEXT_WORDS = 12  # "Anna says they live in Paris" and some slack always pass


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    def add(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered")
        REWARDS[name] = fn
        return fn
    return add


def get_reward(name: str) -> RewardFn:
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; valid: {sorted(REWARDS)}") from None


def answer_block(completion: str) -> str | None:
    """The stripped content of the completion's single well-formed ``<answer>...</answer>`` block,
    or None: no block, a second (or nested) opening or closing tag, a missing closing tag, an empty
    block, or anything but whitespace after ``</answer>``. Text before the block (reasoning) is allowed."""
    opens, closes = list(_OPEN.finditer(completion)), list(_CLOSE.finditer(completion))
    if len(opens) != 1 or len(closes) != 1:
        return None
    start, close = opens[0].end(), closes[0]
    if close.start() < start or completion[close.end():].strip():
        return None
    return completion[start:close.start()].strip() or None


@register_reward("format")
def format_reward(item: dict[str, Any], completion: str) -> float:
    """1.0 iff the completion ends with exactly one well-formed, non-empty answer block."""
    return 1.0 if answer_block(completion) is not None else 0.0


@register_reward("accuracy")
def accuracy_reward(item: dict[str, Any], completion: str) -> float:
    """The rule judge's (score - 1) / 4 on the answer block's content; 0 without a well-formed
    block, for an empty answer, or when a guard sees hedging or stuffing (see the module docstring)."""
    answer = answer_block(completion)
    if answer is None or not _words(answer) or is_hedged(item, answer):
        return 0.0
    score = _JUDGE.score(item, answer).score
    return min(1.0, max(0.0, (float(score) - 1.0) / 4.0))


@register_reward("exact")
def exact_reward(item: dict[str, Any], completion: str) -> float:
    """1.0 iff accuracy is 1.0 (NeMo-RL's "exact")."""
    return 1.0 if accuracy_reward(item, completion) == 1.0 else 0.0


def combine_rewards(weights: Mapping[str, float]) -> Callable[[dict[str, Any], str], tuple[float, dict[str, float]]]:
    """``(item, completion) -> (sum of weight x reward, {name: unweighted reward})``.
    Names and weights are checked here, before any rollout, not at the first call."""
    if not weights:
        raise ValueError(f"no rewards given; valid: {sorted(REWARDS)}")
    fns = {name: get_reward(name) for name in weights}
    frozen = {name: float(w) for name, w in weights.items()}
    bad = {name: w for name, w in frozen.items() if not math.isfinite(w)}
    if bad:
        raise ValueError(f"reward weights must be finite, got {bad}")

    def total(item: dict[str, Any], completion: str) -> tuple[float, dict[str, float]]:
        parts = {name: fn(item, completion) for name, fn in fns.items()}
        return sum(frozen[name] * value for name, value in parts.items()), parts

    return total


# ---------------------------------------------------------------- guards


def is_hedged(item: dict[str, Any], answer: str) -> bool:
    """True when ``answer`` names more candidates than the reference needs, or stuffs free text."""
    check = _HEDGE_CHECKS.get(item["answer_type"])
    return bool(check and check(item, answer))


def _count_phrase(words: list[str], phrase: str) -> int:
    """How often ``phrase`` occurs as whole words in ``words`` (both normalised by the judge's ``_words``)."""
    target = _words(phrase)
    k = len(target)
    return sum(words[i:i + k] == target for i in range(len(words) - k + 1)) if k else 0


def _stuffed(item: dict[str, Any], answer: str, terms: list[str]) -> bool:
    """Much longer than the key terms (and than 1.5x the reference), or a key term repeated
    more than once beyond what the reference says: recall-style scoring would reward both."""
    words, reference = _words(answer), _words(str(item.get("reference", "")))
    term_words = sum(len(_words(t)) for t in terms)
    if len(words) > max(3 * term_words, _MIN_FREE_TEXT_WORDS, 3 * len(reference) // 2):
        return True
    for term in {t.lower() for t in terms}:
        allowed = max(sum(t.lower() == term for t in terms), _count_phrase(reference, term))
        if _count_phrase(words, term) > allowed + 1:
            return True
    return False


def _candidates_named(answer: str, candidates: tuple[str, ...]) -> int:
    words = _words(answer)
    return sum(_count_phrase(words, c) > 0 for c in candidates)


def _text_hedged(item: dict[str, Any], answer: str) -> bool:
    want = str(item["answer"]["value"]).lower()
    vocab = next((v for v in _TEXT_VOCABULARIES if want in {c.lower() for c in v}), ())
    return _candidates_named(answer, vocab) > 1 or _stuffed(item, answer, [want])


def _caption_hedged(item: dict[str, Any], answer: str) -> bool:
    terms = [str(t) for t in item["answer"]["terms"]]
    needed = len({t.lower() for t in terms})
    return _candidates_named(answer, _CAPTION_CANDIDATES) > needed or _stuffed(item, answer, terms)


def _yesno_hedged(item: dict[str, Any], answer: str) -> bool:
    words = set(_words(answer))
    return bool(words & _YES) and bool(words & _NO)


def _clip_time_hedged(item: dict[str, Any], answer: str) -> bool:
    """Two clips or two times. Bare "2 at 1.5" also counts as hedged: the judge would read the
    clip numbers 2, 1, 5 and the time 2, so only the reference's "Audio 2 at 1.50 s" form is judged."""
    times = {float(x) for x in _FLOAT.findall(_CLIP_MENTION.sub(" ", answer))}
    return len(set(_indices(answer))) > 1 or len(times) > 1


_HEDGE_CHECKS: dict[str, Callable[[dict[str, Any], str], bool]] = {
    "index": lambda item, a: len(set(_indices(a))) > 1,
    "clip_time": _clip_time_hedged,
    "set": lambda item, a: len(set(_indices(a))) > len(set(item["answer"]["values"])),
    "sequence": lambda item, a: len(_indices(a)) > len(item["answer"]["values"]),
    "number": lambda item, a: len({float(x) for x in _FLOAT.findall(a)}) > 1,
    "yesno": _yesno_hedged,
    "text": _text_hedged,
    "caption": _caption_hedged,
}
