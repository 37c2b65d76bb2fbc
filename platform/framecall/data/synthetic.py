"""Synthetic corpus: the embedded default data, made offline and deterministic for a seed.

Tasks (rows in the shard schema, all times in seconds):

- ``words``: "When does the k-th occurrence of the word 'w' occur?" -> one timestamp.
- ``words_all``: the transcript is given; one timestamp per word.
- ``speakers``: LibriCount-style mixture of 1..max_speakers espeak voices, each later
  voice delayed; "When does the k-th speaker start speaking?".
- ``events``: procedural sound events; "When does the k-th occurrence of the event 'chirp' occur?".

``answer_window`` restricts which events are *asked about* (for single-event tasks the
question picks an event inside it; for ``words_all`` every word lies inside it), while
``min_seconds``/``max_seconds`` restrict the clip length, independently. Labels are
espeak's word events; README's data section gives their measured offset from the audio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from framecall.audio.espeak import VoiceSettings, get_synthesizer
from framecall.audio.events import EVENT_GENERATORS, add_noise, make_event
from framecall.audio.io import TARGET_SAMPLE_RATE, encode_flac, resample
from framecall.data.schema import TASKS
from framecall.prompts import VOCABULARY, alignment_prompt, event_question, speaker_question, word_question

SR = TARGET_SAMPLE_RATE

VOICES = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", None)


@dataclass
class SynthConfig:
    """How `jobs/make_data.py` makes a synthetic corpus."""

    task: str = "words_all"
    """One of words, words_all, speakers, events."""
    num: int = 200
    """Items to generate."""
    seed: int = 0
    """Same seed, same config -> identical items."""
    min_seconds: float = 1.0
    """Shortest clip."""
    max_seconds: float = 5.0
    """Longest clip."""
    answer_window: tuple[float, float] | None = None
    """Only ask about events whose time lies in [a, b] seconds (None: anywhere)."""
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.9, "val": 0.05, "test": 0.05})
    """Split name -> fraction; each item's split is drawn from these."""
    snr_db: float | None = None
    """Add white noise at this SNR (None: clean; events default to 20 dB)."""
    max_speakers: int = 10
    """speakers task: k is drawn from 1..max_speakers."""
    max_events: int = 6
    """events task: events per clip are drawn from 2..max_events."""
    rows_per_shard: int = 256

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {list(TASKS)}")
        if self.num < 1:
            raise ValueError(f"num must be >= 1, got {self.num}")
        if not (0 < self.min_seconds <= self.max_seconds):
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}")
        if self.answer_window is not None:
            a, b = self.answer_window
            if not (0 <= a < b):
                raise ValueError(f"answer_window must be (a, b) with 0 <= a < b, got {self.answer_window}")
            if a >= self.max_seconds:
                raise ValueError(
                    f"answer_window starts at {a} s but clips are at most {self.max_seconds} s: no event can be asked"
                )
        if not self.splits or any(v < 0 for v in self.splits.values()) or sum(self.splits.values()) <= 0:
            raise ValueError(f"splits must be non-negative fractions with a positive sum, got {self.splits}")
        if not 1 <= self.max_speakers <= 10:
            raise ValueError("max_speakers must be in 1..10")
        if self.max_events < 2:
            raise ValueError("max_events must be >= 2")


class WindowUnreachable(RuntimeError):
    """No draw put an askable event in the answer window."""


def _in_window(t: float, window: tuple[float, float] | None) -> bool:
    return window is None or window[0] <= t <= window[1]


def random_voice(rng: np.random.Generator) -> VoiceSettings:
    return VoiceSettings(
        voice=str(rng.choice(VOICES)),
        variant=VARIANTS[int(rng.integers(len(VARIANTS)))],
        rate_wpm=int(rng.integers(140, 211)),
        pitch=int(rng.integers(25, 76)),
        pitch_range=int(rng.integers(30, 71)),
    )


def _speech(rng: np.random.Generator, seconds: float, voice: VoiceSettings) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """About ``seconds`` of speech at 16 kHz, cut at a word start. Returns samples [N], words."""
    n_words = max(2, int(seconds * voice.rate_wpm / 60 * 1.3) + 2)
    text = " ".join(rng.choice(VOCABULARY, size=n_words))
    utt = get_synthesizer().synthesize(text, voice)
    samples = resample(utt.samples, utt.sample_rate, SR)
    words = [(w.text, w.start_s) for w in utt.words]
    kept = [w for w in words if w[1] <= seconds - 0.25]
    if len(kept) < len(words):  # cut where the first dropped word begins
        samples = samples[: int(words[len(kept)][1] * SR)]
    return samples[: int(seconds * SR)], kept


def _place(clip: np.ndarray, samples: np.ndarray, offset_s: float) -> None:
    start = int(round(offset_s * SR))
    end = min(clip.size, start + samples.size)
    clip[start:end] += samples[: end - start]


def _finish(clip: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    peak = float(np.abs(clip).max())
    if peak > 0:
        clip = clip * (0.9 / peak)
    if snr_db is not None:
        clip = add_noise(clip, snr_db, rng)
        clip = clip * (0.95 / max(0.95, float(np.abs(clip).max())))
    return clip.astype(np.float32)


def _duration(rng: np.random.Generator, cfg: SynthConfig) -> float:
    return float(rng.uniform(cfg.min_seconds, cfg.max_seconds))


def _gen_words(rng: np.random.Generator, cfg: SynthConfig, all_words: bool) -> dict[str, Any]:
    duration = _duration(rng, cfg)
    voice = random_voice(rng)
    lo, hi = cfg.answer_window if (all_words and cfg.answer_window) else (0.0, duration)
    offset = lo + float(rng.uniform(0.0, 0.3))
    limit = min(hi, duration) - offset
    if limit <= 0.3:
        raise WindowUnreachable(f"window {cfg.answer_window} does not fit a {duration:.2f} s clip")
    samples, words = _speech(rng, limit + 0.25, voice)
    words = [(w, offset + t) for w, t in words if offset + t <= min(hi, duration - 0.25)]
    if not words:
        raise WindowUnreachable("no word fits the clip")
    clip = np.zeros(int(duration * SR), np.float32)
    _place(clip, samples, offset)
    clip = _finish(clip, cfg.snr_db, rng)
    transcript = " ".join(w for w, _ in words)
    meta = {"voice": voice.name, "rate_wpm": voice.rate_wpm, "pitch": voice.pitch, "words": words,
            "transcript": transcript}
    if all_words:
        times = [round(t, 4) for _, t in words]
        prompt = alignment_prompt(transcript)
        target = json.dumps([round(t, 2) for t in times])
        return dict(prompt=prompt, target_text=target, answer=target, audio=clip, duration_s=duration,
                    event_times_s=times, query_index=None, meta=meta)
    candidates = [i for i, (_, t) in enumerate(words) if _in_window(t, cfg.answer_window)]
    if not candidates:
        raise WindowUnreachable(f"no word starts inside {cfg.answer_window}")
    i = int(rng.choice(candidates))
    word, t = words[i]
    k = sum(1 for w, _ in words[: i + 1] if w == word)
    prompt = word_question(k, word)
    target = json.dumps([{"word": word, "start": round(t, 2)}])
    return dict(prompt=prompt, target_text=target, answer=f"{t:.2f}", audio=clip, duration_s=duration,
                event_times_s=[round(t, 4)], query_index=k, meta=meta)


def _gen_speakers(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    duration = _duration(rng, cfg)
    k_max = max(1, min(cfg.max_speakers, int((duration - 0.8) / 0.3) + 1))
    k = int(rng.integers(1, k_max + 1))
    # sorted onsets in [0, duration - 0.8], at least 0.3 s apart: draw gaps, then shift
    slack = (duration - 0.8) - 0.3 * (k - 1)
    cuts = np.sort(rng.uniform(0.0, slack, size=k))
    onsets = [float(c + 0.3 * j) for j, c in enumerate(cuts)]
    clip = np.zeros(int(duration * SR), np.float32)
    voices = []
    seen: set[str] = set()
    for j, onset in enumerate(onsets):
        voice = random_voice(rng)
        while voice.name in seen and len(seen) < len(VOICES) * len(VARIANTS):
            voice = random_voice(rng)
        seen.add(voice.name)
        samples, words = _speech(rng, duration - onset, voice)
        # per-speaker loudness varies (0 to -6 dB), as in real mixtures
        _place(clip, samples / max(1e-6, float(np.abs(samples).max())) * 10 ** (-rng.uniform(0, 6) / 20), onset)
        voices.append({"voice": voice.name, "rate_wpm": voice.rate_wpm, "pitch": voice.pitch,
                       "onset_s": round(onset, 4), "text": " ".join(w for w, _ in words)})
    clip = _finish(clip, cfg.snr_db, rng)
    candidates = [j for j, t in enumerate(onsets) if _in_window(t, cfg.answer_window)]
    if not candidates:
        raise WindowUnreachable(f"no speaker onset inside {cfg.answer_window}")
    j = int(rng.choice(candidates))
    t = onsets[j]
    prompt = speaker_question(j + 1)
    target = json.dumps([{"speaker": j + 1, "start": round(t, 2)}])
    meta = {"num_speakers": k, "speakers": voices}
    return dict(prompt=prompt, target_text=target, answer=f"{t:.2f}", audio=clip, duration_s=duration,
                event_times_s=[round(t, 4)], query_index=j + 1, meta=meta)


def _gen_events(rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    duration = _duration(rng, cfg)
    classes = list(rng.choice(sorted(EVENT_GENERATORS), size=3, replace=False))
    m = int(rng.integers(2, cfg.max_events + 1))
    labels = [str(rng.choice(classes)) for _ in range(m)]
    sounds = [(label, make_event(label, rng, SR) * float(rng.uniform(0.4, 1.0))) for label in labels]
    # sequential placement, random gaps, no overlap: every onset is exact and audible
    total = sum(s.size for _, s in sounds) / SR
    free = duration - total - 0.05
    if free <= 0:
        sounds = sounds[:2]
        free = duration - sum(s.size for _, s in sounds) / SR - 0.05
        if free <= 0:
            raise WindowUnreachable(f"{duration:.2f} s is too short for two events")
    gaps = rng.dirichlet(np.ones(len(sounds) + 1)) * free
    clip = np.zeros(int(duration * SR), np.float32)
    t = 0.0
    events = []
    for (label, s), gap in zip(sounds, gaps):
        t += float(gap)
        onset = round(t * SR) / SR
        _place(clip, s, onset)
        events.append((label, onset, onset + s.size / SR))
        t = onset + s.size / SR
    snr = cfg.snr_db if cfg.snr_db is not None else 20.0
    clip = _finish(clip, snr, rng)
    candidates = [i for i, (_, on, _) in enumerate(events) if _in_window(on, cfg.answer_window)]
    if not candidates:
        raise WindowUnreachable(f"no event onset inside {cfg.answer_window}")
    i = int(rng.choice(candidates))
    label, onset, _ = events[i]
    k = sum(1 for lab, _, _ in events[: i + 1] if lab == label)
    prompt = event_question(k, label)
    target = json.dumps([{"event": label, "start": round(onset, 2)}])
    meta = {"events": [{"label": lab, "onset_s": round(on, 6), "offset_s": round(off, 6)} for lab, on, off in events],
            "snr_db": snr}
    return dict(prompt=prompt, target_text=target, answer=f"{onset:.2f}", audio=clip, duration_s=duration,
                event_times_s=[round(onset, 6)], query_index=k, meta=meta)


_GENERATORS: dict[str, Callable[[np.random.Generator, SynthConfig], dict[str, Any]]] = {
    "words": lambda rng, cfg: _gen_words(rng, cfg, all_words=False),
    "words_all": lambda rng, cfg: _gen_words(rng, cfg, all_words=True),
    "speakers": _gen_speakers,
    "events": _gen_events,
}

_MAX_TRIES = 50


def generate_item(cfg: SynthConfig, index: int) -> dict[str, Any]:
    """Item ``index`` of the corpus, as a shard row. Deterministic in (seed, task, index)."""
    task_no = TASKS.index(cfg.task)
    rng = np.random.default_rng([cfg.seed, task_no, index])
    names = list(cfg.splits)
    probs = np.array([cfg.splits[n] for n in names], float)
    split = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    for _ in range(_MAX_TRIES):
        try:
            item = _GENERATORS[cfg.task](rng, cfg)
            break
        except WindowUnreachable:
            continue
    else:
        raise WindowUnreachable(
            f"task {cfg.task}: no draw in {_MAX_TRIES} put an event inside answer_window={cfg.answer_window} "
            f"with clips of {cfg.min_seconds}-{cfg.max_seconds} s; widen the window or lengthen the clips"
        )
    audio = item.pop("audio")
    duration = audio.size / SR
    times = [min(t, duration) for t in item.pop("event_times_s")]
    item.pop("duration_s")
    return {
        "id": f"{cfg.task}-s{cfg.seed}-{index:07d}",
        "task": cfg.task,
        "split": split,
        "source": "synthetic",
        "audio": encode_flac(audio, SR),
        "sample_rate": SR,
        "duration_s": duration,
        "event_times_s": times,
        "num_events": len(times),
        "clips": [],
        **item,
        "meta": json.dumps(item["meta"]),
    }


def generate(cfg: SynthConfig) -> Iterator[dict[str, Any]]:
    for i in range(cfg.num):
        yield generate_item(cfg, i)
