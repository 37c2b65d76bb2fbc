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
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from framecall.audio.espeak import PLAIN_VARIANT, EspeakError, VoiceSettings, get_synthesizer
from framecall.audio.events import EVENT_GENERATORS, add_noise, make_event
from framecall.audio.io import TARGET_SAMPLE_RATE, encode_flac, resample
from framecall.config import to_dict
from framecall.data.schema import TASKS
from framecall.data.shards import SHARD_GLOB, ShardDirectoryError, ShardWriter, read_manifest
from framecall.prompts import VOCABULARY, alignment_prompt, event_question, speaker_question, word_question
from framecall.token_answers import TARGET_FORMATS, format_word_times

SR = TARGET_SAMPLE_RATE

VOICES = ("en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", None)
HELDOUT_VOICES = ("en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "+klatt", "+Annie", "+david")
"""Voice families no training item uses: three English accents espeak has beside VOICES (every
variant), and three variants (with every accent), one of them Klatt's formant synthesiser."""

GENERATOR_VERSION = 1
"""Bump when the same SynthConfig starts to give different items: directories made by training
jobs record it and are rebuilt when it changes (see :func:`ensure_synthetic`)."""


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
    heldout_voices: list[str] = field(default_factory=list)
    """Voice families kept out of the ``splits``: "en-us-nyc" (a voice, every variant), "+klatt" (a
    variant, every voice) or "en+f5" (one pair). See HELDOUT_VOICES."""
    heldout_num: int = 0
    """Extra items (indices num..num+heldout_num-1) spoken only by held-out voices, all in ``heldout_split``."""
    heldout_split: str = "test_heldout_voice"
    target_format: str = "compact"
    """words_all token target: compact ``[0.21, ...]`` or json_objects ``[{"word": .., "start": ..}]``
    (the paper's); the other tasks' targets are JSON objects already."""

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
        if self.target_format not in TARGET_FORMATS:
            raise ValueError(f"target_format {self.target_format!r} is not one of {list(TARGET_FORMATS)}")
        self._check_voices()

    def _check_voices(self) -> None:
        if self.heldout_num < 0:
            raise ValueError(f"heldout_num must be >= 0, got {self.heldout_num}")
        if self.heldout_num and not self.heldout_voices:
            raise ValueError("heldout_num > 0 needs heldout_voices (the families its items are spoken by)")
        if self.heldout_num and self.task == "events":
            raise ValueError("the events task has no voices to hold out; set heldout_num=0")
        if self.heldout_split in self.splits:
            raise ValueError(f"heldout_split {self.heldout_split!r} is also one of splits {list(self.splits)}")
        for family in self.heldout_voices:
            voice, _, variant = family.partition("+")
            if not (voice or variant) or family.count("+") > 1:
                raise ValueError(f"heldout_voices entry {family!r} must be 'voice', '+variant' or 'voice+variant'")
        if not training_voice_pool(self.heldout_voices):
            raise ValueError(f"heldout_voices {self.heldout_voices} hold out every training voice")
        if self.heldout_voices and not heldout_voice_pool(self.heldout_voices):
            raise ValueError(f"heldout_voices {self.heldout_voices} name no voice")


class WindowUnreachable(RuntimeError):
    """No draw put an askable event in the answer window."""


def _in_window(t: float, window: tuple[float, float] | None) -> bool:
    return window is None or window[0] <= t <= window[1]


VoiceDraw = Callable[[np.random.Generator], VoiceSettings]


def in_families(voice: str, variant: str | None, families: list[str]) -> bool:
    """Whether (voice, variant) belongs to one of the held-out ``families`` (see SynthConfig)."""
    for family in families:
        fam_voice, _, fam_variant = family.partition("+")
        if (not fam_voice or fam_voice == voice) and (not fam_variant or fam_variant == (variant or PLAIN_VARIANT)):
            return True
    return False


def training_voice_pool(heldout: list[str]) -> list[tuple[str, str | None]]:
    return [(v, var) for v in VOICES for var in VARIANTS if not in_families(v, var, heldout)]


def heldout_voice_pool(heldout: list[str]) -> list[tuple[str, str | None]]:
    """Every (voice, variant) of the held-out families, over VOICES and the voices they name."""
    parts = [f.partition("+") for f in heldout]
    voices = list(dict.fromkeys([*VOICES, *(v for v, _, _ in parts if v)]))
    variants = list(dict.fromkeys([*VARIANTS, *(var for _, _, var in parts if var and var != PLAIN_VARIANT)]))
    return [(v, var) for v in voices for var in variants if in_families(v, var, heldout)]


def _settings(rng: np.random.Generator, voice: str, variant: str | None) -> VoiceSettings:
    return VoiceSettings(voice=voice, variant=variant, rate_wpm=int(rng.integers(140, 211)),
                         pitch=int(rng.integers(25, 76)), pitch_range=int(rng.integers(30, 71)))


def random_voice(rng: np.random.Generator, heldout: tuple[str, ...] | list[str] = ()) -> VoiceSettings:
    """A training voice: any of VOICES x VARIANTS outside the ``heldout`` families, at a random
    rate and pitch. With nothing held out the draws are those of earlier corpora (same items)."""
    while True:
        voice, variant = str(rng.choice(VOICES)), VARIANTS[int(rng.integers(len(VARIANTS)))]
        if not in_families(voice, variant, list(heldout)):
            return _settings(rng, voice, variant)


def heldout_voice_draw(heldout: list[str]) -> VoiceDraw:
    pool = heldout_voice_pool(heldout)

    def draw(rng: np.random.Generator) -> VoiceSettings:
        voice, variant = pool[int(rng.integers(len(pool)))]
        return _settings(rng, voice, variant)

    return draw


def check_voices_exist(families: list[str]) -> None:
    """Speak one word in every held-out pair: a typo fails here, naming the entry, not mid-corpus."""
    for voice, variant in heldout_voice_pool(families):
        try:
            get_synthesizer().synthesize("test", VoiceSettings(voice=voice, variant=variant))
        except EspeakError as e:
            raise ValueError(f"heldout_voices: espeak has no voice {voice}+{variant or PLAIN_VARIANT} ({e})") from e


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


def _gen_words(rng: np.random.Generator, cfg: SynthConfig, draw_voice: VoiceDraw, all_words: bool) -> dict[str, Any]:
    duration = _duration(rng, cfg)
    voice = draw_voice(rng)
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
        target = format_word_times([(w, t) for (w, _), t in zip(words, times)], cfg.target_format)
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


def _gen_speakers(rng: np.random.Generator, cfg: SynthConfig, draw_voice: VoiceDraw) -> dict[str, Any]:
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
        voice = draw_voice(rng)
        while voice.name in seen:  # k <= 10 and every pool holds more than 10 voices
            voice = draw_voice(rng)
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


def _gen_events(rng: np.random.Generator, cfg: SynthConfig, draw_voice: VoiceDraw) -> dict[str, Any]:
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


_GENERATORS: dict[str, Callable[[np.random.Generator, SynthConfig, VoiceDraw], dict[str, Any]]] = {
    "words": lambda rng, cfg, voices: _gen_words(rng, cfg, voices, all_words=False),
    "words_all": lambda rng, cfg, voices: _gen_words(rng, cfg, voices, all_words=True),
    "speakers": _gen_speakers,
    "events": _gen_events,
}

_MAX_TRIES = 50


def generate_item(cfg: SynthConfig, index: int) -> dict[str, Any]:
    """Item ``index`` of the corpus, as a shard row. Deterministic in (seed, task, index).

    Indices from ``cfg.num`` on are the held-out-voice items (split ``cfg.heldout_split``).
    """
    task_no = TASKS.index(cfg.task)
    rng = np.random.default_rng([cfg.seed, task_no, index])
    if index >= cfg.num:
        split, draw_voice = cfg.heldout_split, heldout_voice_draw(cfg.heldout_voices)
    else:
        names = list(cfg.splits)
        probs = np.array([cfg.splits[n] for n in names], float)
        split = names[int(rng.choice(len(names), p=probs / probs.sum()))]
        heldout = tuple(cfg.heldout_voices)

        def draw_voice(rng: np.random.Generator) -> VoiceSettings:
            return random_voice(rng, heldout)
    for _ in range(_MAX_TRIES):
        try:
            item = _GENERATORS[cfg.task](rng, cfg, draw_voice)
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
    """Every item: ``num`` in the splits, then ``heldout_num`` spoken by held-out voices."""
    if cfg.heldout_num:
        check_voices_exist(cfg.heldout_voices)
    for i in range(cfg.num + cfg.heldout_num):
        yield generate_item(cfg, i)


# --- corpora made by training jobs: parameters recorded, stale directories never reused ---

MADE_BY_TRAINING = "train.ensure_data"
"""``params.made_by`` of a corpus a training job made itself (``data.make_if_missing``)."""


class StaleDataError(ValueError):
    """A synthetic corpus was made with other generator parameters than the run asks for."""


def synth_params(cfg: SynthConfig, made_by: str) -> dict[str, Any]:
    """What a synthetic corpus's manifest records under ``params``."""
    return {"synth": to_dict(cfg), "generator_version": GENERATOR_VERSION, "made_by": made_by}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples -> lists, as the manifest stores them


def stale_params(params: dict[str, Any], cfg: SynthConfig) -> dict[str, tuple[Any, Any]]:
    """{parameter: (recorded, wanted)} for every generator parameter that differs.

    A parameter the manifest does not record (a corpus older than the parameter) counts as its
    default: the generator's defaults reproduce the corpora made before they existed.
    """
    recorded = params.get("synth") or {}
    defaults, wanted = _plain(to_dict(SynthConfig())), _plain(to_dict(cfg))
    diff = {k: (recorded.get(k, defaults[k]), v) for k, v in wanted.items() if recorded.get(k, defaults[k]) != v}
    diff.update({k: (v, None) for k, v in recorded.items() if k not in wanted})
    version = params.get("generator_version", 1)
    if version != GENERATOR_VERSION:
        diff["generator_version"] = (version, GENERATOR_VERSION)
    return diff


def made_by_training(data_dir: Path, params: dict[str, Any]) -> bool:
    """Whether a training job made this corpus (then it owns it: checks it and may rebuild it).
    Corpora from ``jobs/make_data.py`` (``_synth_config.yaml`` beside older ones) or converters are
    the user's: used as they are."""
    if "made_by" in params:
        return params["made_by"] == MADE_BY_TRAINING
    return "synth" in params and not (data_dir / "_synth_config.yaml").exists()


def _build_into_place(data_dir: Path, cfg: SynthConfig) -> None:
    """Write the corpus beside ``data_dir`` and swap it in: a crash never leaves a partial corpus
    (shards without a manifest) that a later run would read."""
    building = data_dir.parent / f".{data_dir.name}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    with ShardWriter(building, cfg.rows_per_shard, params=synth_params(cfg, MADE_BY_TRAINING)) as writer:
        writer.write_all(generate(cfg))
    stale = data_dir.parent / f".{data_dir.name}.stale-{os.getpid()}"
    if data_dir.exists():
        os.rename(data_dir, stale)
    os.rename(building, data_dir)
    shutil.rmtree(stale, ignore_errors=True)


def ensure_synthetic(data_dir: str | Path, cfg: SynthConfig, make_if_missing: bool) -> Path:
    """The corpus of ``cfg`` in ``data_dir``: made if missing, rebuilt if a training job made it
    with other parameters, refused (StaleDataError naming them) if stale and not ``make_if_missing``.

    Decision: one directory per configured path (no parameter digest in the name), checked
    against the manifest's recorded parameters, so the README's paths stay true and a stale
    corpus cannot be read silently.
    """
    data_dir = Path(data_dir).resolve()
    has_shards = data_dir.is_dir() and any(data_dir.glob(SHARD_GLOB))
    if has_shards:
        params = read_manifest(data_dir).get("params", {}) if (data_dir / "_manifest.json").is_file() else {}
        if not made_by_training(data_dir, params):
            return data_dir
        diff = stale_params(params, cfg)
        if not diff:
            return data_dir
        changes = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in ((k, *v) for k, v in diff.items()))
        if not make_if_missing:
            raise StaleDataError(f"{data_dir} was made with other generator parameters ({changes}); set "
                                 "data.make_if_missing=true to rebuild it, or point --data at another directory")
        print(f"[framecall] {data_dir} was made with other generator parameters ({changes}): rebuilding it")
    elif not make_if_missing:
        raise ShardDirectoryError(f"{data_dir}: no {SHARD_GLOB} files and data.make_if_missing is false")
    else:
        print(f"[framecall] no shards in {data_dir}: making {cfg.num} + {cfg.heldout_num} held-out-voice "
              f"synthetic '{cfg.task}' items")
    if data_dir.is_dir() and not has_shards and any(data_dir.iterdir()):
        raise ShardDirectoryError(f"{data_dir} holds files but no shards; give an empty or new directory")
    _build_into_place(data_dir, cfg)
    return data_dir
