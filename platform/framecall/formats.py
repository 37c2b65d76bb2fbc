"""Timing formats in and out, each through the library speech tools use where one exists.

Writers take plain values (seconds) so Serve, batch prediction and the result dataclasses
(:mod:`framecall.results`) share them; readers return the same values, so a file we write reads
back with the same times within the format's rounding:

=========  ====================  ===============================  ===========================
format     used for              written by                       read by
=========  ====================  ===============================  ===========================
TextGrid   word intervals        praatio (long format, MFA's)     praatio
CTM        word times            by hand (one line per word)      by hand (:func:`read_ctm`)
SRT        word subtitles        ``srt``                          ``srt``
WebVTT     word subtitles        ``webvtt-py``                    ``webvtt-py``
RTTM       speaker turns         ``pyannote.core`` Annotation     by hand (:func:`read_rttm`)
=========  ====================  ===============================  ===========================

CTM (NIST; NeMo Forced Aligner's output) and RTTM are one whitespace-separated line per item;
pyannote.core writes RTTM but has no reader (that is ``pyannote.database``, with its own heavy
dependencies), so RTTM and CTM are parsed here, each error naming file and line.
"""

from __future__ import annotations

import datetime
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

FORMATS = ("json", "textgrid", "ctm", "srt", "vtt", "rttm")


class FormatError(ValueError):
    """A file not in the format it claims; the message names the file and line."""


@dataclass(frozen=True)
class Interval:
    """A labelled span in seconds (a word, or one speaker's turn); ``confidence`` None when unknown."""

    label: str
    start: float
    end: float
    confidence: float | None = None


def _words(items: Iterable[Interval | dict]) -> list[Interval]:
    """Accept the ``{word, start, end[, confidence]}`` dicts Serve and batch prediction carry."""
    return [w if isinstance(w, Interval) else
            Interval(str(w["word"]), float(w["start"]), float(w["end"]), w.get("confidence")) for w in items]


# ---------------------------------------------------------------- TextGrid (praatio)

def write_textgrid(words: Iterable[Interval | dict], duration_s: float, tier: str = "words") -> str:
    """Long TextGrid with one interval tier; the gaps between words become empty ("") intervals."""
    from praatio import textgrid

    entries, last = [], 0.0
    for w in _words(words):  # praatio refuses overlaps and zero-length intervals: keep them strictly ordered
        start = max(w.start, last)
        stop = max(w.end, start + 0.001)
        entries.append((start, stop, w.label))
        last = stop
    grid = textgrid.Textgrid()
    grid.addTier(textgrid.IntervalTier(tier, entries, 0.0, max(duration_s, last)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.TextGrid"
        grid.save(str(path), format="long_textgrid", includeBlankSpaces=True, reportingMode="silence")
        return path.read_text()


def write_textgrid_points(times_s: Sequence[float], labels: Sequence[str], duration_s: float,
                          tier: str = "events") -> str:
    """Long TextGrid with one point tier (localized events: a time and a label each)."""
    from praatio import textgrid

    points = [(float(t), str(label)) for t, label in zip(times_s, labels)]
    grid = textgrid.Textgrid()
    grid.addTier(textgrid.PointTier(tier, points, 0.0, max([duration_s, *[t for t, _ in points]])))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.TextGrid"
        grid.save(str(path), format="long_textgrid", includeBlankSpaces=True, reportingMode="silence")
        return path.read_text()


def read_textgrid(path: str | Path, tier: str = "words") -> list[Interval]:
    """The non-empty intervals of ``tier`` (silences dropped)."""
    from praatio import textgrid

    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=False, reportingMode="silence")
    except Exception as e:  # praatio raises a variety of parse errors
        raise FormatError(f"{path}: not a readable TextGrid ({e})") from e
    if tier not in grid.tierNames:
        raise FormatError(f"{path}: no tier {tier!r} (tiers: {list(grid.tierNames)})")
    return [Interval(e.label, float(e.start), float(e.end)) for e in grid.getTier(tier).entries]


# ---------------------------------------------------------------- CTM (by hand)

def write_ctm(words: Iterable[Interval | dict], utterance: str = "utt", channel: str = "1") -> str:
    """``<utt> <channel> <start> <duration> <word> [<confidence>]`` per word, milliseconds."""
    if not utterance or any(c.isspace() for c in utterance):
        raise ValueError(f"CTM utterance id must be one non-empty token, got {utterance!r}")
    lines = []
    for w in _words(words):
        conf = "" if w.confidence is None else f" {w.confidence:.3f}"
        lines.append(f"{utterance} {channel} {w.start:.3f} {max(0.0, w.end - w.start):.3f} {w.label}{conf}\n")
    return "".join(lines)


def read_ctm(path: str | Path) -> dict[str, list[Interval]]:
    """utterance id -> its words in file order. Blank lines and ``;;`` comments are skipped."""
    out: dict[str, list[Interval]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields or line.startswith(";;"):
            continue
        if len(fields) < 5:
            raise FormatError(f"{path}:{number}: a CTM line has at least 5 fields "
                              f"(utt channel start duration word), got {len(fields)}")
        start, duration = _floats(path, number, fields[2:4], ("start", "duration"))
        conf = _floats(path, number, fields[5:6], ("confidence",))[0] if len(fields) > 5 and fields[5] != "NA" else None
        out.setdefault(fields[0], []).append(Interval(fields[4], start, start + duration, conf))
    return out


def _floats(path: str | Path, number: int, values: Sequence[str], names: Sequence[str]) -> list[float]:
    out = []
    for value, name in zip(values, names):
        try:
            x = float(value)
        except ValueError:
            raise FormatError(f"{path}:{number}: {name} {value!r} is not a number") from None
        if not x >= 0 or x == float("inf"):  # NaN fails the comparison
            raise FormatError(f"{path}:{number}: {name} {value!r} must be a finite number >= 0")
        out.append(x)
    return out


# ---------------------------------------------------------------- SRT (srt) and WebVTT (webvtt-py)

def write_srt(words: Iterable[Interval | dict]) -> str:
    """One subtitle per word."""
    import srt

    subs = [srt.Subtitle(i, datetime.timedelta(seconds=w.start), datetime.timedelta(seconds=max(w.end, w.start)),
                         w.label) for i, w in enumerate(_words(words), 1)]
    return srt.compose(subs, reindex=False)


def read_srt(path: str | Path) -> list[Interval]:
    import srt

    try:
        return [Interval(s.content, s.start.total_seconds(), s.end.total_seconds())
                for s in srt.parse(Path(path).read_text())]
    except srt.SRTParseError as e:
        raise FormatError(f"{path}: not a readable SRT file ({e})") from e


def _vtt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _vtt_seconds(stamp: str) -> float:
    hours, minutes, seconds = (["0", *stamp.split(":")])[-3:]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def write_vtt(words: Iterable[Interval | dict]) -> str:
    """One cue per word."""
    import webvtt

    cues = [webvtt.Caption(_vtt_time(w.start), _vtt_time(max(w.end, w.start)), w.label) for w in _words(words)]
    return webvtt.WebVTT(captions=cues).content


def read_vtt(path: str | Path) -> list[Interval]:
    import webvtt
    from webvtt.errors import MalformedFileError

    try:
        cues = webvtt.read(str(path)).captions
    except MalformedFileError as e:
        raise FormatError(f"{path}: not a readable WebVTT file ({e})") from e
    # webvtt-py's start_in_seconds truncates to whole seconds: parse the stamps it read
    return [Interval(c.text, _vtt_seconds(c.start), _vtt_seconds(c.end)) for c in cues]


# ---------------------------------------------------------------- RTTM (pyannote.core out, by hand in)

def onset_turns(onsets_s: Sequence[float], duration_s: float, labels: Sequence[str] | None = None) -> list[Interval]:
    """Speaker onsets -> one turn per speaker, from its onset to the next later onset (or the audio's
    end; speakers starting together overlap). Turns last at least 1 ms, RTTM's resolution (a
    zero-length segment would vanish from a pyannote Annotation). Default labels: ``spk1``,
    ``spk2``, ... in the order given."""
    order = sorted(range(len(onsets_s)), key=lambda i: onsets_s[i])
    names = list(labels) if labels is not None else [f"spk{k + 1}" for k in range(len(onsets_s))]
    if len(names) != len(onsets_s):
        raise ValueError(f"{len(names)} labels for {len(onsets_s)} onsets")
    starts = [float(onsets_s[i]) for i in order]
    turns = []
    for i, start in zip(order, starts):
        end = next((s for s in starts if s > start), float(duration_s))
        turns.append(Interval(names[i], start, max(end, start + 0.001)))
    return turns


def write_rttm(turns: Iterable[Interval], file_id: str) -> str:
    """``SPEAKER <file> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>`` per turn (pyannote.core)."""
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=file_id)
    for k, turn in enumerate(turns):
        annotation[Segment(turn.start, max(turn.end, turn.start)), k] = turn.label
    return annotation.to_rttm()


def read_rttm(path: str | Path) -> dict[str, list[Interval]]:
    """file id -> its SPEAKER turns, sorted by start (other RTTM line types are skipped)."""
    out: dict[str, list[Interval]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            if fields and not fields[0].isupper():
                raise FormatError(f"{path}:{number}: not an RTTM line (expected a type such as SPEAKER first)")
            continue
        if len(fields) < 8:
            raise FormatError(f"{path}:{number}: a SPEAKER line has 9 or 10 fields, got {len(fields)}")
        start, duration = _floats(path, number, fields[3:5], ("onset", "duration"))
        out.setdefault(fields[1], []).append(Interval(fields[7], start, start + duration))
    return {file_id: sorted(turns, key=lambda t: t.start) for file_id, turns in out.items()}


def speaker_onsets(turns: Iterable[Interval]) -> dict[str, float]:
    """speaker -> the start of their first turn, in order of onset (a diarization reference's onsets)."""
    first: dict[str, float] = {}
    for turn in turns:
        first[turn.label] = min(turn.start, first.get(turn.label, turn.start))
    return dict(sorted(first.items(), key=lambda kv: kv[1]))
