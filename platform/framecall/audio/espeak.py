"""ctypes binding to the espeak-ng library shipped in the ``espeakng-loader`` wheel.

The wheel has the shared library and voice data but no Python API, so the binding is
ours. Word events from the synth callback give each word's start sample: that is the
label of the synthetic corpus. espeak's state is global to a process, so all calls go
through one lock and one synthesiser per process (:func:`get_synthesizer`).

Determinism: espeak keeps state across utterances (a static pitch-flutter phase, filter
and noise state). We load voices from an overlay of the wheel's data
(:func:`_deterministic_data_dir`) whose variants set ``flutter 0``, and reseed espeak's
random source before every utterance. Measured here: the same (text, voice, seed) then
gives the same length and word times whatever was spoken before, but the waveform can
still differ (12-24 dB SNR in about half of the utterances) with the history; a fresh
process running the same sequence of calls is byte-identical.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE, _PARAM_WORDGAP = 1, 2, 3, 4, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset of the word
        ("length", ctypes.c_int),  # characters in the word
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index at the synth's own rate
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _deterministic_data_dir() -> str:
    """Overlay of the wheel's espeak-ng-data: symlinks, plus variants with ``flutter 0``.

    Built once per machine in the framecall cache, atomically (temp dir + rename).
    """
    import espeakng_loader

    from framecall.cache import cache_dir

    src = espeakng_loader.get_data_path()
    version = getattr(espeakng_loader, "__version__", None) or str(int(os.path.getmtime(src)))
    target = cache_dir() / f"espeak-ng-data-{version}-noflutter"
    if (target / "voices" / "!v" / PLAIN_VARIANT).is_file():
        return str(target)
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=".espeak-")
    for name in os.listdir(src):
        if name != "voices":
            os.symlink(os.path.join(src, name), os.path.join(tmp, name))
    variants = os.path.join(tmp, "voices", "!v")
    os.makedirs(variants)
    src_variants = os.path.join(src, "voices", "!v")
    for name in os.listdir(src_variants):
        with open(os.path.join(src_variants, name), "rb") as f:
            body = f.read()
        with open(os.path.join(variants, name), "wb") as f:
            f.write(body + b"\nflutter 0\n")
    with open(os.path.join(variants, PLAIN_VARIANT), "w") as f:
        f.write(f"language variant\nname {PLAIN_VARIANT}\nflutter 0\n")
    try:
        os.rename(tmp, target)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


PLAIN_VARIANT = "fc-plain"  # the voice's own settings, without flutter


class EspeakError(RuntimeError):
    """espeak-ng refused a call (unknown voice, failed initialisation, ...)."""


@dataclass(frozen=True)
class SpokenWord:
    """One word of synthesised speech. ``start_s`` is espeak's word event, in seconds."""

    text: str
    start_s: float
    char_offset: int


@dataclass(frozen=True)
class Utterance:
    """Synthesised speech: ``samples`` float32 [N] in [-1, 1] at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int
    words: tuple[SpokenWord, ...]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class VoiceSettings:
    """What makes one synthetic "speaker": voice (language+variant), rate, pitch."""

    voice: str = "en-us"
    variant: str | None = None  # e.g. "m3", "f2", "klatt"; None = the voice's default
    rate_wpm: int = 175
    pitch: int = 50  # 0-99
    pitch_range: int = 50  # 0-99
    word_gap_10ms: int = 0  # extra pause between words, in units of 10 ms

    @property
    def name(self) -> str:
        return f"{self.voice}+{self.variant or PLAIN_VARIANT}"


class EspeakSynthesizer:
    """Synthesises text to samples with word start times. Use :func:`get_synthesizer`."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        data_path = _deterministic_data_dir().encode()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({rate}) with data at {data_path!r}")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int]] = []  # (char_offset, length, sample)
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: ctypes would free it
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._events.append((ev.text_position - 1, ev.length, ev.sample))
            i += 1
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: VoiceSettings = VoiceSettings(), seed: int = 0) -> Utterance:
        """Speak ``text``; returns samples and one :class:`SpokenWord` per word event.

        Same (text, voice, seed) -> same samples, whatever was synthesised before.
        """
        if not text.strip():
            raise ValueError("cannot synthesise empty text")
        encoded = text.encode("utf-8")
        with self._lock:
            # before the voice is set: measured, seeding after it leaves runs different
            self._lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise EspeakError(f"unknown espeak voice {voice.name!r}")
            for param, value in (
                (_PARAM_RATE, voice.rate_wpm), (_PARAM_PITCH, voice.pitch),
                (_PARAM_RANGE, voice.pitch_range), (_PARAM_WORDGAP, voice.word_gap_10ms),
                (_PARAM_VOLUME, 100),
            ):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks, self._events = [], []
            buf = ctypes.create_string_buffer(encoded)
            err = self._lib.espeak_Synth(buf, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise EspeakError(f"espeak_Synth failed ({err}) for text {text[:40]!r}")
            self._lib.espeak_Synchronize()
            chunks, events = self._chunks, self._events
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        samples = pcm.astype(np.float32) / 32768.0
        words = []
        for offset, length, sample in events:
            # text_position counts characters (UTF-8 decoded), so slice the str
            words.append(SpokenWord(text[offset : offset + length], sample / self.sample_rate, offset))
        return Utterance(samples, self.sample_rate, tuple(words))


_SYNTH: EspeakSynthesizer | None = None
_SYNTH_LOCK = threading.Lock()


def get_synthesizer() -> EspeakSynthesizer:
    """The process-wide synthesiser (espeak's state is global)."""
    global _SYNTH
    with _SYNTH_LOCK:
        if _SYNTH is None:
            _SYNTH = EspeakSynthesizer()
        return _SYNTH
