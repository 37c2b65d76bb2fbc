"""Short synthetic clips with the facts PolyAudio answers follow from.

A speech clip is one espeak "speaker" (voice + variant + pitch) saying one scripted
sentence that carries facts (a name, an age, a city, a number, an hour) and a keyword;
an event clip holds 1-4 procedural sound events with exact onsets. Clips are drawn by
(seed, split, index): the splits use disjoint index streams, so no clip is shared.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framecall.audio.espeak import VoiceSettings, get_synthesizer
from framecall.audio.events import EVENT_GENERATORS, make_event
from framecall.audio.io import resample

SR = 16000
SPLITS = ("train", "preference", "bench")
NAMES = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Ivy", "Jack", "Laura", "Max", "Nina",
         "Oscar", "Paula", "Sam")
CITIES = ("Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Oslo", "Dublin", "Lisbon", "Prague")
KEYWORDS = ("river", "garden", "music", "coffee", "window", "bicycle", "morning", "letter", "mountain", "market")
ACTIVITIES = ("reads a book", "cooks dinner", "goes running", "calls a friend", "walks the dog", "paints a picture")
TEMPLATES = (
    "My name is {name}. I am {age} years old and I live in {city}. I like the {keyword}.",
    "Hello, this is {name} from {city}. I am {age}, and the {keyword} is my favourite.",
    "{name} here. I turned {age} this year. Home is {city}, near the {keyword}.",
)


@dataclass
class Clip:
    clip_id: str
    kind: str  # "speech" | "events"
    samples: np.ndarray  # [N] float32, 16 kHz
    speaker: str = ""
    transcript: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, float]] = field(default_factory=list)  # (label, onset s)

    @property
    def duration_s(self) -> float:
        return self.samples.size / SR

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.events]

    def digest(self) -> str:
        return hashlib.sha256(np.asarray(self.samples, np.float32).tobytes()).hexdigest()[:16]


def speaker_voice(rng: np.random.Generator) -> VoiceSettings:
    voices = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland")
    variants = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", None)
    return VoiceSettings(voice=str(rng.choice(voices)), variant=variants[int(rng.integers(len(variants)))],
                         rate_wpm=int(rng.integers(160, 200)), pitch=int(rng.integers(25, 76)))


def voice_name(v: VoiceSettings) -> str:
    return f"{v.name}/p{v.pitch}"


class ClipSource:
    """Deterministic clips for one (seed, split): ``speech(...)`` / ``events(...)`` each take the
    next index of that split's stream, so two splits never produce the same clip."""

    def __init__(self, seed: int, split: str, stream: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.seed, self.split, self.stream, self.next_index = seed, split, stream, 0

    def _rng(self) -> tuple[str, np.random.Generator]:
        index = self.next_index
        self.next_index += 1
        clip_id = f"{self.split}-s{self.seed}-t{self.stream}-c{index:07d}"
        return clip_id, np.random.default_rng([self.seed, SPLITS.index(self.split), self.stream, index, 77])

    def speech(self, voice: VoiceSettings | None = None, **facts: Any) -> Clip:
        """One sentence; facts not given are drawn (name, age, city, keyword)."""
        clip_id, rng = self._rng()
        voice = voice or speaker_voice(rng)
        f = {"name": str(rng.choice(NAMES)), "age": int(rng.integers(18, 80)), "city": str(rng.choice(CITIES)),
             "keyword": str(rng.choice(KEYWORDS))}
        f.update(facts)
        text = f.get("text") or TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(**f)
        utt = get_synthesizer().synthesize(text, voice, seed=int(rng.integers(1 << 30)))
        samples = resample(utt.samples, utt.sample_rate, SR).astype(np.float32)
        peak = float(np.abs(samples).max()) or 1.0
        return Clip(clip_id, "speech", samples * (0.8 / peak), speaker=voice_name(voice), transcript=text,
                    facts={k: v for k, v in f.items() if k != "text"})

    def events(self, labels: list[str] | None = None, num: int | None = None, seconds: float = 2.5) -> Clip:
        """Sound events in sequence (no overlap) in a clip of ``seconds``; onsets exact."""
        clip_id, rng = self._rng()
        if labels is None:
            labels = list(rng.choice(sorted(EVENT_GENERATORS), size=num or int(rng.integers(1, 4))))
        sounds = [make_event(label, rng, SR) * float(rng.uniform(0.5, 1.0)) for label in labels]
        total = sum(s.size for s in sounds) / SR
        seconds = max(seconds, total + 0.3)
        gaps = rng.dirichlet(np.ones(len(sounds) + 1)) * (seconds - total - 0.05)
        clip = np.zeros(int(seconds * SR), np.float32)
        t, events = 0.0, []
        for label, s, gap in zip(labels, sounds, gaps):
            t += float(gap)
            start = int(round(t * SR))
            clip[start : start + s.size] += s[: clip.size - start]
            events.append((str(label), round(start / SR, 4)))
            t = start / SR + s.size / SR
        clip += rng.normal(0, 0.003, clip.size).astype(np.float32)  # a floor, as recordings have
        return Clip(clip_id, "events", clip, events=events)
