"""Measure how espeak-ng's word events line up with the audio they label.

Words are spoken with a 400 ms pause before each (espeak's word-gap parameter), so each
word's energy onset can be found after silence: the first 5 ms window, after the word
event minus 50 ms, whose RMS exceeds -35 dB of the utterance peak. Reports the
offset (energy onset - word event) over many random voices and words.

    python benchmarks/measure_espeak_alignment.py [--utterances 200] [--output-json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.audio.espeak import get_synthesizer  # noqa: E402
from framecall.data.synthetic import VOCABULARY, random_voice  # noqa: E402


def energy_onset(x: np.ndarray, sr: int, start: int, threshold: float) -> float | None:
    win = int(0.005 * sr)
    for i in range(max(0, start), x.size - win, win // 2):
        if np.sqrt(np.mean(x[i : i + win] ** 2)) > threshold:
            return i / sr
    return None


def rms_threshold(x: np.ndarray, sr: int, below_peak_db: float = 35.0) -> float:
    """-35 dB below the loudest 5 ms window of ``x``."""
    win = int(0.005 * sr)
    frames = x[: x.size // win * win].reshape(-1, win)
    return float(np.sqrt((frames**2).mean(1)).max()) * 10 ** (-below_peak_db / 20)


def measure(utterances: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    synth = get_synthesizer()
    offsets = []
    for _ in range(utterances):
        voice = random_voice(rng)
        voice = type(voice)(**{**voice.__dict__, "word_gap_10ms": 40})
        text = " ".join(rng.choice(VOCABULARY, size=4))
        utt = synth.synthesize(text, voice)
        x, sr = utt.samples, utt.sample_rate
        thr = rms_threshold(x, sr)
        for w in utt.words:
            on = energy_onset(x, sr, int((w.start_s - 0.05) * sr), thr)
            if on is not None:
                offsets.append(on - w.start_s)
    o = np.array(offsets) * 1000
    return {
        "words": int(o.size),
        "offset_ms_mean": float(o.mean()),
        "offset_ms_median": float(np.median(o)),
        "offset_ms_std": float(o.std()),
        "offset_ms_p05": float(np.percentile(o, 5)),
        "offset_ms_p95": float(np.percentile(o, 95)),
        "offset_ms_min": float(o.min()),
        "offset_ms_max": float(o.max()),
        "within_20ms": float(np.mean(np.abs(o) <= 20)),
        "within_40ms": float(np.mean(np.abs(o) <= 40)),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--utterances", type=int, default=200)
    p.add_argument("--output-json")
    args = p.parse_args()
    result = measure(args.utterances)
    print(json.dumps(result, indent=2))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2))
