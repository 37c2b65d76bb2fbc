"""Judges behind one interface: ``judge.score(item, response) -> Verdict`` (1-5, or a failure).

- :class:`RuleJudge` (default, offline, deterministic): clip indices, sets, sequences,
  numbers, clip + time with tolerance, yes/no, normalized text, caption key terms.
- :class:`LLMJudge`: the seed's rubric-guided 1-5 score on correctness and parsimony of
  clip use, averaged over two paraphrased judge prompts, against any OpenAI-compatible
  chat endpoint. With ``top_logprobs`` the score is the probability-weighted mean over the
  tokens "1".."5" (G-Eval); otherwise the digit is parsed from the text. Unparseable
  output is retried once, then recorded as a failure, never as a score.
- :func:`agreement`: Spearman's rho and Kendall's tau between two judges (seed Table 3).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class Verdict:
    score: float | None  # 1..5; None = the judge failed (counted, never averaged in)
    detail: str = ""


class Judge(Protocol):
    name: str

    def score(self, item: dict[str, Any], response: str) -> Verdict: ...


def extract_answer(response: str) -> str:
    """The text inside <answer></answer> (the models are asked for it), else the whole response."""
    m = _ANSWER.search(response)
    return (m.group(1) if m else response).strip()


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split()


def _indices(text: str) -> list[int]:
    """Clip indices named in an answer: "Audio 2", "clip 3", or bare numbers."""
    named = re.findall(r"(?:audio|clip|recording)\s*#?\s*(\d+)", text, re.I)
    return [int(x) for x in (named or _INT.findall(text))]


class RuleJudge:
    """Deterministic scoring from the item's answer metadata; 5 = right, 1 = wrong."""

    name = "rule"
    time_tolerance_s = 0.5

    def score(self, item: dict[str, Any], response: str) -> Verdict:
        kind, ref = item["answer_type"], item["answer"]
        text = extract_answer(response)
        if kind == "index":
            got = _indices(text)
            return Verdict(5.0 if got[:1] == [ref["index"]] else 1.0, f"got {got[:1]}")
        if kind == "number":
            nums = _FLOAT.findall(text)
            if not nums:
                return Verdict(1.0, "no number")
            err = abs(float(nums[0]) - float(ref["value"]))
            return Verdict(5.0 if err == 0 else 2.0 if err <= 1 else 1.0, f"off by {err:g}")
        if kind == "clip_time":
            got = _indices(text)
            times = [float(x) for x in _FLOAT.findall(re.sub(r"(?:audio|clip)\s*#?\s*\d+", " ", text, flags=re.I))]
            if got[:1] != [ref["index"]]:
                return Verdict(1.0, "wrong clip")
            if not times:
                return Verdict(3.0, "right clip, no time")
            err = abs(times[0] - ref["time"])
            return Verdict(5.0 if err <= self.time_tolerance_s else 4.0 if err <= 3 * self.time_tolerance_s else 3.0,
                           f"time off by {err:.2f} s")
        if kind == "set":
            got, want = set(_indices(text)), set(ref["values"])
            jaccard = len(got & want) / len(got | want) if got | want else 1.0
            return Verdict(1.0 + 4.0 * jaccard, f"jaccard {jaccard:.2f}")
        if kind == "sequence":
            got, want = _indices(text), list(ref["values"])
            if got == want:
                return Verdict(5.0, "exact order")
            if sorted(got) != sorted(want):
                return Verdict(1.0, "not a permutation of the clips")
            pos = {v: i for i, v in enumerate(got)}
            pairs = [(a, b) for i, a in enumerate(want) for b in want[i + 1:]]
            right = sum(pos[a] < pos[b] for a, b in pairs) / len(pairs)
            return Verdict(1.0 + 3.0 * right, f"{right:.0%} of pairs in order")
        if kind == "yesno":
            words = _words(text)
            said = next((w for w in words if w in ("yes", "no", "true", "false")), None)
            said = {"true": "yes", "false": "no"}.get(said, said)
            return Verdict(5.0 if said == ref["value"] else 1.0, f"said {said}")
        if kind == "text":
            want, got = str(ref["value"]).lower(), _words(text)
            if " ".join(got) == want:
                return Verdict(5.0, "exact")
            return Verdict(4.0 if want in got else 1.0, "contained" if want in got else "absent")
        if kind == "caption":
            terms = [t.lower() for t in ref["terms"]]
            low = text.lower()
            recall = sum(t in low for t in terms) / max(1, len(terms))
            return Verdict(1.0 + 4.0 * recall, f"key terms {recall:.0%}")
        raise ValueError(f"unknown answer type {kind!r}")


RUBRICS = (
    "You are grading an answer to a question about several audio clips.\n"
    "Question: {question}\nReference answer: {reference}\nCandidate answer: {response}\n"
    "Score the candidate from 1 (wrong) to 5 (fully correct, using only the clips that matter). "
    "Reply with the single digit.",
    "Rate how well the candidate answer matches the reference, considering correctness and whether it "
    "refers to the right audio clips and no others.\nQuestion: {question}\nReference: {reference}\n"
    "Candidate: {response}\nGive one digit from 1 to 5.",
)
DIGITS = ("1", "2", "3", "4", "5")


class LLMJudge:
    """A judge model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    name = "llm"

    def __init__(self, base_url: str, model: str = "judge", api_key: str | None = None, timeout: float = 120.0,
                 use_logprobs: bool = True, guided: bool = False) -> None:
        """``guided``: send vLLM's ``guided_choice`` (also honoured by framecall's judge server) so
        the score tokens are the only candidates; plain OpenAI endpoints do not take it."""
        import requests

        self.url = base_url.rstrip("/") + "/v1/chat/completions"
        self.model, self.timeout, self.use_logprobs, self.guided = model, timeout, use_logprobs, guided
        self.guided_choices = list(DIGITS)
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.failures = 0

    def _ask(self, prompt: str) -> float | None:
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                                "max_tokens": 1, "temperature": 0.0}
        if self.use_logprobs:
            body.update(logprobs=True, top_logprobs=20)
        if self.guided:
            body["guided_choice"] = self.guided_choices
        r = self.session.post(self.url, json=body, timeout=self.timeout)
        r.raise_for_status()
        choice = r.json()["choices"][0]
        content = (choice.get("logprobs") or {}).get("content") or []
        if content and content[0].get("top_logprobs"):
            probs = {t["token"].strip(): math.exp(t["logprob"]) for t in content[0]["top_logprobs"]}
            mass = sum(probs.get(d, 0.0) for d in DIGITS)
            if mass > 0:  # G-Eval: the expectation over the score tokens, renormalised
                return sum(int(d) * probs.get(d, 0.0) for d in DIGITS) / mass
        m = re.search(r"[1-5]", choice["message"].get("content") or "")
        return float(m.group(0)) if m else None

    def score(self, item: dict[str, Any], response: str) -> Verdict:
        scores = []
        for rubric in RUBRICS:
            prompt = rubric.format(question=item["question"], reference=item["reference"],
                                   response=extract_answer(response))
            value = self._ask(prompt)
            if value is None:  # one retry, then a recorded failure
                value = self._ask(prompt)
            if value is None:
                self.failures += 1
                return Verdict(None, "judge output unparseable twice")
            scores.append(value)
        return Verdict(sum(scores) / len(scores), json.dumps([round(s, 3) for s in scores]))


def agreement(a: Sequence[float | None], b: Sequence[float | None]) -> dict[str, float]:
    """Spearman's rho and Kendall's tau over the items both judges scored."""
    from scipy.stats import kendalltau, spearmanr

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 3:
        return {"items": len(pairs), "spearman_rho": float("nan"), "kendall_tau": float("nan")}
    xs, ys = zip(*pairs)
    return {"items": len(pairs), "spearman_rho": float(spearmanr(xs, ys).statistic),
            "kendall_tau": float(kendalltau(xs, ys).statistic)}
