"""Read timestamps out of a token model's generated text, leniently, and say how it went.

The token baseline is trained to print a JSON list: ``[0.21, 0.49]`` for every word or
``[{"word": "much", "start": 0.63}]`` for one event (the paper's appendix). Generated text
is often almost that: cut off, with a stray token, or a list of numbers in prose. The
parser tries, in order: the JSON list between the first ``[`` and the last ``]``; every
``"start": x``; every number in the text. What none of them yields is a parse failure,
scored as a miss (never dropped).
"""

from __future__ import annotations

import json
import math
import re
from typing import Literal, Sequence

ParseStatus = Literal["ok", "recovered", "failed"]

TARGET_FORMATS = ("compact", "json_objects")
"""How a words_all target is printed: compact ``[0.21, 0.49]`` (about 4.7 tokens a word with the
Qwen tokenizer) or the paper's ``[{"word": "much", "start": 0.63}, ...]`` (7-10 tokens a word)."""


def format_word_times(words: Sequence[tuple[str, float]], target_format: str = "compact") -> str:
    """The token target of (word, start seconds) pairs, times to 10 ms; parsed back by
    :func:`parse_timestamps` in either format."""
    if target_format == "compact":
        return json.dumps([round(t, 2) for _, t in words])
    if target_format == "json_objects":
        return json.dumps([{"word": w, "start": round(t, 2)} for w, t in words])
    raise ValueError(f"target format {target_format!r} is not one of {list(TARGET_FORMATS)}")

_START = re.compile(r'"?start"?\s*:\s*(-?\d+(?:\.\d+)?)')
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def _from_json(value) -> list[float] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("start")
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            return None
        out.append(float(item))
    return out


def parse_timestamps(text: str) -> tuple[list[float], ParseStatus]:
    """-> (times in seconds, "ok" | "recovered" | "failed"). Failed means no times."""
    lo, hi = text.find("["), text.rfind("]")
    if 0 <= lo < hi:
        try:
            times = _from_json(json.loads(text[lo : hi + 1]))
        except ValueError:
            times = None
        if times is not None:
            return times, "ok" if text.strip() == text[lo : hi + 1].strip() else "recovered"
    for pattern in (_START, _NUMBER):
        found = [float(x) for x in pattern.findall(text)]
        if found:
            return found, "recovered"
    return [], "failed"
