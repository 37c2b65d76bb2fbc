"""What :class:`framecall.inference.FrameLocalizer` answers, as plain dataclasses with writers.

Every predicted time carries a confidence (see :func:`framecall.inference.event_confidences`):
for a Poisson head the posterior probability that the event lies within ``tolerance_s`` of the
predicted time, for a binary head the peak probability at it.

    result = loc.localize(audio, "When does the 1st speaker start speaking?")
    result.times_s, result.confidences, result.to_rttm(file_id="meeting1")
    words = loc.align(audio, "the cat sat on the mat")
    words.to_textgrid(), words.to_ctm(utterance="utt1"), words.to_srt(), words.to_vtt()
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from framecall import formats


@dataclass
class Localization:
    """The answer to one question about one recording: event times (seconds, in the decoder's
    order, ascending for the shipped decoders) with one confidence each."""

    question: str
    times_s: list[float]
    confidences: list[float]
    task: str | None = None
    duration_s: float = 0.0
    count_estimate: float | None = None  # Lam(T) of a Poisson head: the expected number of events
    tolerance_s: float | None = None  # the window a Poisson confidence is the probability mass of
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.times_s) != len(self.confidences):
            raise ValueError(f"{len(self.times_s)} times but {len(self.confidences)} confidences")

    @property
    def num_events(self) -> int:
        return len(self.times_s)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "num_events": self.num_events}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_textgrid(self, label: str | None = None) -> str:
        """A point tier ``events``: one point per time, labelled ``label`` (default: the task) or 1, 2, ..."""
        labels = [label or self.task or str(k) for k in range(1, self.num_events + 1)]
        return formats.write_textgrid_points(self.times_s, labels, self.duration_s)

    def to_rttm(self, file_id: str = "audio", labels: Sequence[str] | None = None) -> str:
        """The times as speaker onsets: one SPEAKER turn each, from its onset to the next onset or
        the end of the audio (turn-taking; overlaps and pauses are not modelled by an onset)."""
        return formats.write_rttm(formats.onset_turns(self.times_s, self.duration_s, labels), file_id)


@dataclass
class WordTiming:
    word: str
    start: float
    end: float
    confidence: float  # of the start time (the head predicts starts; ends come from the signal's energy)


@dataclass
class Alignment:
    """Word start and end times of a transcript in one recording."""

    transcript: str
    words: list[WordTiming]
    duration_s: float = 0.0
    tolerance_s: float | None = None
    model: dict[str, Any] = field(default_factory=dict)

    def intervals(self) -> list[formats.Interval]:
        return [formats.Interval(w.word, w.start, w.end, w.confidence) for w in self.words]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def to_textgrid(self) -> str:
        """A ``words`` interval tier (Montreal Forced Aligner's layout); silences are empty intervals."""
        return formats.write_textgrid(self.intervals(), self.duration_s)

    def to_ctm(self, utterance: str = "utt") -> str:
        """NIST CTM with the confidence column (NeMo Forced Aligner's output format)."""
        return formats.write_ctm(self.intervals(), utterance)

    def to_srt(self) -> str:
        return formats.write_srt(self.intervals())

    def to_vtt(self) -> str:
        return formats.write_vtt(self.intervals())
