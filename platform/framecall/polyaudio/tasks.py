"""The eleven PolyAudio task generators: 2-5 clips, a question, the reference answer and
the metadata the answer follows from (``answer`` = what the rule judge checks).

Every generator is ``gen(rng, source, n) -> Task`` with ``n`` clips. Clip indices in
questions and answers are 1-based ("Audio 1"). Questions are drawn from paraphrases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from framecall.audio.events import EVENT_GENERATORS
from framecall.polyaudio.clips import CITIES, KEYWORDS, NAMES, Clip, ClipSource, speaker_voice, voice_name

GENERATOR_VERSION = 1  # bump when any generator changes: the bench is (version, seed)


@dataclass
class Task:
    question: str
    reference: str  # the reference answer text
    answer_type: str  # index | set | sequence | number | clip_time | yesno | text | caption
    answer: dict[str, Any]  # what the answer is, for the rule judge
    clips: list[Clip]
    evidence: dict[str, Any] = field(default_factory=dict)  # which clips/facts the answer follows from


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def _labels(rng: np.random.Generator, k: int) -> list[str]:
    return [str(x) for x in rng.choice(sorted(EVENT_GENERATORS), size=k, replace=False)]


def comparison(rng, src: ClipSource, n: int) -> Task:
    counts = rng.permutation(np.arange(1, n + 1))[:n]  # distinct event counts: one clip has the most
    clips = [src.events(num=int(c), seconds=1.2 + 0.45 * int(c)) for c in counts]
    best = int(np.argmax(counts)) + 1
    q = _pick(rng, ("Which audio contains the most sound events?", "Compare the clips: which one has the largest "
                    "number of distinct sounds?", "Listen to all clips. In which one do you hear the most events?"))
    return Task(q, f"Audio {best}", "index", {"index": best}, clips, {"counts": [int(c) for c in counts]})


def temporal_grounding(rng, src: ClipSource, n: int) -> Task:
    target, *others = _labels(rng, 3)
    where = int(rng.integers(n))
    clips = []
    for i in range(n):
        labels = [target] if i == where else [str(rng.choice(others))]
        if rng.random() < 0.5:
            labels.append(str(rng.choice(others)))
        clips.append(src.events(labels=list(rng.permutation(labels)), seconds=2.5))
    onset = next(t for label, t in clips[where].events if label == target)
    q = _pick(rng, (f"In which audio, and at what time, does the '{target}' sound start?",
                    f"Find the '{target}': which clip is it in and when does it begin (in seconds)?",
                    f"Locate the '{target}' event across the clips. Give the clip and its onset time."))
    return Task(q, f"Audio {where + 1} at {onset:.2f} s", "clip_time", {"index": where + 1, "time": onset}, clips,
                {"label": target})


def needle_qa(rng, src: ClipSource, n: int) -> Task:
    names = [str(x) for x in rng.choice(NAMES, size=n, replace=False)]
    clips = [src.speech(name=name) for name in names]
    k = int(rng.integers(n))
    fact = _pick(rng, ("age", "city"))
    value = clips[k].facts[fact]
    q = {"age": _pick(rng, (f"How old is {names[k]}?", f"One speaker is called {names[k]}. What age do they give?",
                            f"What is {names[k]}'s age?")),
         "city": _pick(rng, (f"Where does {names[k]} live?", f"Which city is {names[k]} from?",
                             f"{names[k]} mentions a city. Which one?"))}[fact]
    kind = "number" if fact == "age" else "text"
    return Task(q, str(value), kind, {"value": value}, clips, {"clip": k + 1, "fact": fact})


def speaker_linking(rng, src: ClipSource, n: int) -> Task:
    voices = [speaker_voice(rng) for _ in range(n)]
    same = sorted({int(i) for i in rng.choice(np.arange(1, n), size=int(rng.integers(1, n)), replace=False)})
    while len({voice_name(v) for v in voices}) < n:  # distinct speakers before the links are set
        voices = [speaker_voice(rng) for _ in range(n)]
    for i in same:
        voices[i] = voices[0]
    clips = [src.speech(voice=v) for v in voices]
    answer = [i + 1 for i in same]
    q = _pick(rng, ("Which other audios are spoken by the same person as Audio 1?", "Audio 1 has a speaker. In which "
                    "of the other clips does that same speaker talk?", "Link the speakers: list the clips whose "
                    "speaker is the speaker of Audio 1."))
    return Task(q, ", ".join(f"Audio {i}" for i in answer), "set", {"values": answer}, clips,
                {"speakers": [c.speaker for c in clips]})


def odd_one_out(rng, src: ClipSource, n: int) -> Task:
    n = max(n, 3)
    odd = int(rng.integers(n))
    speech_majority = bool(rng.random() < 0.5)
    clips = [(src.events() if speech_majority else src.speech()) if i == odd else
             (src.speech() if speech_majority else src.events()) for i in range(n)]
    q = _pick(rng, ("Which audio is the odd one out?", "One clip does not belong with the others. Which one?",
                    "Which of these recordings is different in kind from the rest?"))
    return Task(q, f"Audio {odd + 1}", "index", {"index": odd + 1}, clips,
                {"kinds": [c.kind for c in clips]})


def entailment(rng, src: ClipSource, n: int) -> Task:
    clips = [src.speech() for _ in range(n)]
    i, j = (int(x) for x in rng.choice(n, size=2, replace=False))
    a, b = clips[i].facts, clips[j].facts
    claim_true = a["age"] > b["age"]
    q = _pick(rng, (f"Does it follow from the audios that {a['name']} (Audio {i + 1}) is older than {b['name']} "
                    f"(Audio {j + 1})? Answer yes or no.",
                    f"Audio {i + 1} and Audio {j + 1}: is the first speaker older than the second? Yes or no.",
                    f"True or false, as a yes or no: {a['name']} is older than {b['name']}."))
    ref = "yes" if claim_true else "no"
    return Task(q, ref, "yesno", {"value": ref}, clips, {"clips": [i + 1, j + 1], "ages": [a["age"], b["age"]]})


def common_keyword(rng, src: ClipSource, n: int) -> Task:
    keyword = _pick(rng, KEYWORDS)
    others = [k for k in KEYWORDS if k != keyword]
    clips = []
    for _ in range(n):  # each clip names the shared keyword and one other
        extra = _pick(rng, others)
        clips.append(src.speech(text=f"I thought about the {extra} and then about the {keyword}.", keyword=keyword))
    q = _pick(rng, ("Which word is spoken in every audio?", "Find the keyword that all clips have in common.",
                    "What word do all the speakers say?"))
    return Task(q, keyword, "text", {"value": keyword}, clips, {"transcripts": [c.transcript for c in clips]})


def chronological_ordering(rng, src: ClipSource, n: int) -> Task:
    hours = sorted(int(h) for h in rng.choice(np.arange(6, 23), size=n, replace=False))
    order = rng.permutation(n)  # clip i tells the event at hours[order[i]]
    acts = [str(a) for a in rng.choice(("reads a book", "cooks dinner", "goes running", "calls a friend",
                                        "walks the dog", "paints a picture"), size=n, replace=False)]
    name = _pick(rng, NAMES)
    clips = [src.speech(text=f"At {hours[order[i]]} o'clock, {name} {acts[i]}.", name=name) for i in range(n)]
    answer = [int(i) + 1 for i in np.argsort(order)]  # clips sorted by the hour they mention
    q = _pick(rng, ("Put the audios in chronological order of the events they describe.",
                    "Order the clips by the time of day mentioned, earliest first.",
                    "In what order did these things happen? List the audios from first to last."))
    return Task(q, ", ".join(f"Audio {i}" for i in answer), "sequence", {"values": answer}, clips,
                {"hours": [hours[o] for o in order]})


def captioning(rng, src: ClipSource, n: int) -> Task:
    clips = [src.speech() if rng.random() < 0.5 else src.events() for _ in range(n)]

    def describe(c: Clip) -> tuple[str, list[str]]:
        if c.kind == "speech":
            return f"{c.facts['name']} says they live in {c.facts['city']}", [c.facts["name"], c.facts["city"]]
        return "sounds: " + ", ".join(c.labels), list(dict.fromkeys(c.labels))

    if rng.random() < 0.5:  # single-clip caption
        k = int(rng.integers(n))
        text, terms = describe(clips[k])
        q = _pick(rng, (f"Describe Audio {k + 1} in one sentence.", f"What happens in Audio {k + 1}?",
                        f"Give a short caption for Audio {k + 1}."))
        return Task(q, text, "caption", {"terms": terms}, clips, {"mode": "single", "clip": k + 1})
    parts = [describe(c) for c in clips]
    q = _pick(rng, ("Summarise all the audios in one caption.", "Write one caption that covers every clip.",
                    "Describe the whole set of recordings briefly."))
    return Task(q, "; ".join(f"Audio {i + 1}: {t}" for i, (t, _) in enumerate(parts)), "caption",
                {"terms": [term for _, terms in parts for term in terms]}, clips, {"mode": "aggregated"})


def factual_consistency(rng, src: ClipSource, n: int) -> Task:
    name = _pick(rng, NAMES)
    city = _pick(rng, CITIES)
    consistent = bool(rng.random() < 0.5)
    bad = int(rng.integers(n))
    clips = []
    for i in range(n):
        c = city if consistent or i != bad else _pick(rng, [x for x in CITIES if x != city])
        clips.append(src.speech(text=f"{name} was born in {c}.", name=name, city=c))
    q = _pick(rng, (f"Do all the audios agree on where {name} was born? Answer yes or no.",
                    f"Are the clips consistent about {name}'s birthplace? Yes or no.",
                    f"Is every recording's claim about {name}'s city of birth the same? Yes or no."))
    ref = "yes" if consistent else "no"
    return Task(q, ref, "yesno", {"value": ref}, clips, {"inconsistent_clip": None if consistent else bad + 1})


def counting(rng, src: ClipSource, n: int) -> Task:
    target, other = _labels(rng, 2)
    clips, total = [], 0
    for _ in range(n):
        k = int(rng.integers(0, 3))
        labels = [target] * k + [other] * int(rng.integers(0, 2))
        if not labels:
            labels = [other]
        total += k
        clips.append(src.events(labels=list(rng.permutation(labels)), seconds=1.0 + 0.6 * len(labels)))
    q = _pick(rng, (f"How many times does the '{target}' sound occur across all audios?",
                    f"Count every '{target}' in all the clips together.",
                    f"In total, how many '{target}' events are there?"))
    return Task(q, str(total), "number", {"value": total}, clips, {"label": target})


GENERATORS: dict[str, Callable[[np.random.Generator, ClipSource, int], Task]] = {
    "comparison": comparison, "temporal_grounding": temporal_grounding, "needle_qa": needle_qa,
    "speaker_linking": speaker_linking, "odd_one_out": odd_one_out, "entailment": entailment,
    "common_keyword": common_keyword, "chronological_ordering": chronological_ordering,
    "captioning": captioning, "factual_consistency": factual_consistency, "counting": counting,
}
