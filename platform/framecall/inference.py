"""In-process inference with a frame-head checkpoint: the one class Serve, batch prediction,
the CLI and Python users share. It knows no HTTP: admission (allowed roots, registry), size
and duration limits and API keys are the Serve app's business (:mod:`framecall.serving`).

    from framecall.inference import FrameLocalizer
    loc = FrameLocalizer.from_pretrained("runs/train_poisson/best")      # or models:/name/version
    loc.localize(samples_16k, "When does the 2nd occurrence of the word 'much' occur?", num_events=1)
    loc.align("talk.wav", "the cat sat on the mat")      # Alignment: words with start, end, confidence
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from framecall.audio.features import log_mel_batch, pad_waveforms
from framecall.data.collate import token_mask_for
from framecall.frames.alignment import detect_speech_end, word_intervals
from framecall.frames.decoding import decode_curves, decoder_serves, expected_count
from framecall.frames.units import FrameGrid
from framecall.models.checkpoint import CheckpointManifest
from framecall.prompts import alignment_prompt
from framecall.results import Alignment, Localization, WordTiming

SAMPLE_RATE = 16000


@dataclass
class Query:
    """One (audio, question) pair for the batched engine."""

    samples: np.ndarray  # [N] float32, 16 kHz mono, validated
    question: str
    num_events: int | None = None
    return_curve: bool = False
    max_events: int | None = None  # caps the count a Poisson head estimates when num_events is None


def chunk_spans(num_samples: int, window: int | None, overlap: int, align: int) -> list[tuple[int, int]]:
    """[start, end) sample spans covering the audio; starts on multiples of ``align`` (one audio
    token) so every chunk's frame grid coincides with the whole recording's."""
    if window is None or num_samples <= window:
        return [(0, num_samples)]
    step = chunk_step(window, overlap, align)
    spans, start = [], 0
    while True:
        end = min(start + window, num_samples)
        spans.append((start, end))
        if end >= num_samples:
            return spans
        start += step


def chunk_step(window: int, overlap: int, align: int) -> int:
    """Samples between chunk starts: ``window - overlap`` rounded down to whole tokens (at least one)."""
    return max(align, (window - overlap) // align * align)


def stitch(curves: list[torch.Tensor], offsets: list[int]) -> torch.Tensor:
    """Per-chunk curves [T_k] at global sub-frame ``offsets`` -> one curve. In an overlap each
    chunk owns the half nearer its own centre (states far from a window edge are better)."""
    if len(curves) == 1:
        return curves[0]
    ends = [o + c.numel() for o, c in zip(offsets, curves)]
    out = curves[0].new_empty(max(ends))
    for k, (curve, a, b) in enumerate(zip(curves, offsets, ends)):
        lo = a if k == 0 else (a + ends[k - 1]) // 2
        hi = b if k == len(curves) - 1 else (offsets[k + 1] + b) // 2
        out[lo:hi] = curve[lo - a : hi - a]
    return out


class QueryError(ValueError):
    """A question this model cannot answer; ``field`` names the query field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_query(head: str, tasks: list[str], question: str, num_events: int | None, task: str | None = None,
                max_events: int | None = None) -> str | None:
    """The domain checks every caller gets (Serve maps them to 422): a non-empty question of a
    type the model was trained on, a count in range, a count given when a binary head needs one.
    -> the question's task (None when the model lists no tasks and the type is not recognised)."""
    from framecall.prompts import task_of

    if not question.strip():
        raise QueryError("question", "question is empty")
    if num_events is not None and not 1 <= num_events <= (max_events or num_events):
        allowed = f"in 1..{max_events}" if max_events else ">= 1"
        raise QueryError("num_events", f"num_events must be {allowed}, got {num_events}")
    if num_events is None and head != "poisson":
        raise QueryError("num_events", "this model has a binary head: give num_events")
    task = task or task_of(question)[0]
    if tasks and task is None:
        raise QueryError("question", f"question type not recognised; give 'task', one of {tasks}")
    if tasks and task not in tasks:
        raise QueryError("task", f"this model was not trained for {task!r} questions; it answers {tasks}")
    return task


FORWARD_GROUP_CPU = 8
"""Rows per forward pass on CPU: rows sorted by length in groups of 8 took 5.7-6.4 CPU ms per 1-5 s clip
against 7.4-9.1 for one padded pass of 32 on the tiny model (1 thread; benchmarks/profile_stages.py).
On an accelerator the passes are as large as ``max_rows`` allows (sorted all the same)."""


def forward_groups(lengths: list[int], max_rows: int, device_type: str) -> list[list[int]]:
    """Row indices per forward pass: sorted by length (little padding), at most ``max_rows`` per pass
    (``FORWARD_GROUP_CPU`` on CPU)."""
    size = max(1, min(max_rows, FORWARD_GROUP_CPU) if device_type == "cpu" else max_rows)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[lo:lo + size] for lo in range(0, len(order), size)]


class FrameLocalizer:
    """A frame-head checkpoint answering batches of queries (featurize, forward, stitch long audio, decode).

    ``predict(queries) -> results``; ``localize`` and ``align`` answer one recording.
    """

    def __init__(self, model, manifest: CheckpointManifest, decoder: str | None = None,
                 chunk_seconds: float | None = None, chunk_overlap_seconds: float = 4.0,
                 name: str = "model", version: str | None = None, confidence_tolerance_s: float = 0.04) -> None:
        manifest.check(name, frame_head=True)
        self.confidence_tolerance_s = confidence_tolerance_s  # the window a Poisson confidence is the mass of
        self.model, self.manifest = model, manifest
        self.head = manifest.head
        self.decoder = decoder or manifest.default_decoder
        if not decoder_serves(self.decoder, self.head):
            raise ValueError(f"decoder {self.decoder!r} needs a Poisson head; this checkpoint has a {self.head} one")
        self.grid = FrameGrid(manifest.frame_s, manifest.subframes)
        self.features = manifest.features
        self.tasks = list(manifest.tasks)
        limit = chunk_seconds or model.backbone.max_audio_seconds
        self.window = int(limit * SAMPLE_RATE) if limit else None
        self.overlap = int(chunk_overlap_seconds * SAMPLE_RATE)
        self.token_samples = int(round(self.grid.frame_s * SAMPLE_RATE))
        self.info = {"name": name, "version": version or f"step-{manifest.global_step}", "head": self.head,
                     "loss": manifest.loss, "decoder": self.decoder, "tasks": self.tasks,
                     "backbone": manifest.backbone, "git_sha": manifest.git_sha,
                     "unit_s": self.grid.unit_s}

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, device: str | None = None, dtype: str | None = None,
                        allowed_roots: list[str] | None = None, **options: Any) -> FrameLocalizer:
        """A checkpoint directory or ``models:/name/version|@alias|latest`` (``MLFLOW_TRACKING_URI``), on
        the device the runtime helper picks (CUDA + bf16 where present, else CPU + fp32) unless told
        otherwise. ``allowed_roots``: every file the checkpoint names must lie under one of them
        (symlinks resolved; :func:`framecall.models.checkpoint.check_roots`); None: no restriction."""
        from framecall.models.frame_model import load_frame_model
        from framecall.runtime import choose_device

        plan = choose_device(device or "auto", dtype or "auto")
        ref, name, version = str(checkpoint), Path(str(checkpoint)).name, None
        if ref.startswith("models:/"):  # an alias or latest: load and show the version it names now
            import mlflow

            from framecall.models.registry import model_version

            name, version = model_version(ref, mlflow.get_tracking_uri())  # MLFLOW_TRACKING_URI
            ref = f"models:/{name}/{version}"
        model, manifest = load_frame_model(ref, dtype=plan.dtype, allowed_roots=allowed_roots)
        model.to(plan.device)
        return cls(model, manifest, name=options.pop("name", name), version=options.pop("version", version),
                   **options)

    @torch.no_grad()
    def predict(self, queries: list[Query], max_rows: int | None = None) -> list[dict[str, Any]]:
        """Answer queries; ``max_rows`` caps the rows (question x audio chunk) of one forward pass."""
        rows: list[tuple[int, int]] = []  # (query index, chunk start sample)
        waves, prompts = [], []
        for qi, q in enumerate(queries):
            for start, end in chunk_spans(q.samples.size, self.window, self.overlap, self.token_samples):
                rows.append((qi, start))
                waves.append(q.samples[start:end])  # a view: featurized per forward pass, not all up front
                prompts.append(q.question)
        row_curves = self._forward_rows(waves, prompts, max_rows or len(rows))
        per_query: dict[int, tuple[list, list]] = {}
        unit = self.token_samples // self.grid.subframes  # samples per sub-frame
        for (qi, start), row_curve in zip(rows, row_curves):
            curves, offsets = per_query.setdefault(qi, ([], []))
            curves.append(row_curve)
            offsets.append(start // unit)
        return self._answers(queries, [per_query[qi] for qi in range(len(queries))])

    @torch.no_grad()
    def predict_windows(self, windows: Iterable[tuple[int, np.ndarray]], query: Query,
                        max_rows: int = 8) -> dict[str, Any]:
        """One long recording given as its windows ``(start sample, 16 kHz samples [n])``, cut as
        :func:`chunk_spans` cuts (e.g. :class:`~framecall.audio.io.AudioWindows` with ``self.window``
        and :meth:`window_step`), forwarded ``max_rows`` at a time and stitched as :meth:`predict`
        stitches: memory O(window x max_rows), not O(recording). ``query.samples`` is not read."""
        curves: list[torch.Tensor] = []
        offsets: list[int] = []
        unit = self.token_samples // self.grid.subframes  # samples per sub-frame
        waves: list[np.ndarray] = []
        for start, wave in windows:
            waves.append(wave)
            offsets.append(start // unit)
            if len(waves) == max_rows:
                curves += self._forward_rows(waves, [query.question] * len(waves), max_rows)
                waves.clear()
        if waves:
            curves += self._forward_rows(waves, [query.question] * len(waves), max_rows)
        return self._answer(query, curves, offsets)

    def stream_file(self, path: str | Path, query: Query, max_rows: int = 8, source: str | None = None,
                    max_seconds: float | None = None) -> tuple[dict[str, Any], int]:
        """Answer ``query`` about an audio file read window by window (:class:`~framecall.audio.io.AudioWindows`:
        decoded, mixed down and resampled as it is read; limits and errors as :func:`decode_audio`, naming
        ``source``, default the path) -> (the :meth:`predict` result, the recording's 16 kHz sample count)."""
        from framecall.audio.io import AudioWindows

        windows = AudioWindows(path, self.window or 0, self.window_step(), source=source, target_sr=SAMPLE_RATE,
                               max_seconds=max_seconds)
        result = self.predict_windows(windows, query, max_rows)
        return result, int(windows.num_samples or 0)

    def window_step(self) -> int:
        """Samples between window starts of a long recording (:func:`chunk_step`); needs a window."""
        if self.window is None:
            raise ValueError("this localizer reads recordings in one pass (no chunk_seconds): nothing to stream")
        return chunk_step(self.window, self.overlap, self.token_samples)

    def _forward_rows(self, waves: list[np.ndarray], prompts: list[str], max_rows: int) -> list[torch.Tensor]:
        """Forward passes of at most ``max_rows`` rows each -> one curve [T_r] per row (padding dropped),
        in the order given. Rows go through the model sorted by length (:func:`forward_groups`), so a
        pass pads little; each pass's waveforms are featurized together on the model's device
        (:func:`log_mel_batch`)."""
        out: list[torch.Tensor | None] = [None] * len(waves)
        device = next(self.model.parameters()).device  # where from_pretrained put it (runtime.choose_device)
        for rows in forward_groups([w.size for w in waves], max_rows, device.type):
            features, feature_mask = log_mel_batch(*pad_waveforms([waves[r] for r in rows], device), self.features)
            token_mask, _ = token_mask_for(feature_mask.sum(1).tolist(), self.model.backbone.tokens_for_frames)
            batch = {"features": features, "feature_mask": feature_mask, "token_mask": token_mask,
                     "prompts": [prompts[r] for r in rows]}
            scores, mask = self.model(batch)  # [R, T], [R, T]
            scores, mask = scores.float().cpu(), mask.cpu()
            for i, r in enumerate(rows):
                out[r] = scores[i][mask[i]]
        return out  # type: ignore[return-value]

    def _answer(self, q: Query, curves: list[torch.Tensor], offsets: list[int]) -> dict[str, Any]:
        return self._answers([q], [(curves, offsets)])[0]

    def _answers(self, queries: list[Query], pieces: list[tuple[list[torch.Tensor], list[int]]]) -> list[dict[str, Any]]:
        """Each query's chunk curves (and their sub-frame offsets) -> its result; the decoder runs once
        over the padded batch of stitched curves where it has a batched form (:func:`decode_batch`)."""
        if not queries:
            return []
        curves = [stitch(c, o) for c, o in pieces]  # [T_q] each
        if not all(bool(torch.isfinite(c).all()) for c in curves):  # e.g. audio of absurd amplitude
            raise ValueError("the model's scores for this audio are not finite")  # JSON cannot carry inf/NaN
        estimates = [expected_count(c) if self.head == "poisson" else None for c in curves]
        counts = [self._count(q, c, e) for q, c, e in zip(queries, curves, estimates)]
        positions = decode_curves(self.decoder, curves, counts, head=self.head,
                                  min_separation=self.manifest.nms_min_separation, unit_s=self.grid.unit_s)
        return [self._result(q, c, pos, e, len(p[0]))
                for q, c, pos, e, p in zip(queries, curves, positions, estimates, pieces)]

    @staticmethod
    def _count(q: Query, curve: torch.Tensor, estimate: float | None) -> int | None:
        """Events to place: the asked count, else a Poisson estimate capped by ``max_events``; <= T."""
        n = q.num_events
        if n is None and estimate is not None and q.max_events is not None:
            n = int(round(min(estimate, q.max_events)))
        return None if n is None else min(n, curve.numel())

    def _result(self, q: Query, curve: torch.Tensor, pos: torch.Tensor, estimate: float | None,
                chunks: int) -> dict[str, Any]:
        times = [round(float(t), 4) for t in self.grid.to_seconds(pos)]
        confidences = event_confidences(curve, pos, self.head, self.confidence_tolerance_s / self.grid.unit_s)
        result = {"times_s": times, "confidences": [round(c, 4) for c in confidences], "num_events": len(times),
                  "count_estimate": None if estimate is None else round(estimate, 3), "chunks": chunks}
        if q.return_curve:
            result["curve"] = {"unit_s": self.grid.unit_s, "kind": "log_intensity" if self.head == "poisson"
                               else "logit", "values": [round(float(v), 5) for v in curve]}
        return result

    def localize(self, audio: AudioInput, question: str, num_events: int | None = None,
                 task: str | None = None) -> Localization:
        """One recording and one question -> a :class:`~framecall.results.Localization` (times with
        confidences). ``audio``: float32 [N] 16 kHz mono samples, an audio file's path, or its bytes.
        (``predict`` answers many queries at once, as plain dicts, for Serve and batch prediction.)
        A file path is streamed window by window (:meth:`stream_file`): memory does not grow with its length."""
        task = check_query(self.head, self.tasks, question, num_events, task)
        if isinstance(audio, (str, Path)) and self.window is not None:
            result, num_samples = self.stream_file(audio, Query(np.zeros(0, np.float32), question, num_events))
        else:
            samples = as_samples(audio)
            result, num_samples = self.predict([Query(samples, question, num_events)])[0], samples.size
        return Localization(question, result["times_s"], result["confidences"], task, num_samples / SAMPLE_RATE,
                            result["count_estimate"], self.confidence_tolerance_s if self.head == "poisson" else None,
                            dict(self.info))

    def align(self, audio: AudioInput, transcript: str) -> Alignment:
        """Word start and end times of ``transcript`` in ``audio`` (as for :meth:`localize`): starts from
        the head, each end at the word's last loud 10 ms before the next start (so silences show)."""
        samples, words = as_samples(audio), transcript_words(transcript)
        if not words:
            raise QueryError("transcript", "transcript has no words")
        result = self.predict([alignment_query(samples, transcript)])[0]
        if len(result["times_s"]) < len(words):  # never silently fewer words than asked for
            raise QueryError("transcript", f"the model placed only {len(result['times_s'])} of the {len(words)} "
                                           f"words in {samples.size / SAMPLE_RATE:.3f} s of audio")
        timed = align_words(words, result["times_s"], samples, result["confidences"], ends="energy")
        return Alignment(transcript, [WordTiming(**w) for w in timed], samples.size / SAMPLE_RATE,
                         self.confidence_tolerance_s if self.head == "poisson" else None, dict(self.info))


def align_words(words: list[str], times_s: list[float], samples: np.ndarray, confidences: list[float] | None = None,
                ends: str = "next_start") -> list[dict[str, Any]]:
    """Word starts -> [{word, start, end[, confidence]}] in time order. ``ends="next_start"``: a word
    ends where the next begins, the last where speech ends; ``"energy"`` (``align``, Serve, batch
    prediction): at :func:`energy_offsets` within that span, leaving the silences between words."""
    order = sorted(range(len(times_s)), key=lambda i: times_s[i])
    end_s = detect_speech_end(samples, SAMPLE_RATE)
    intervals = word_intervals(times_s, max(end_s, max(times_s, default=0.0)))
    if ends == "energy":
        offsets = energy_offsets(samples, [s for s, _ in intervals], [e for _, e in intervals])
        intervals = [(s, e) for (s, _), e in zip(intervals, offsets)]
    elif ends != "next_start":
        raise ValueError(f"ends must be 'next_start' or 'energy', got {ends!r}")
    out: list[dict[str, Any]] = [{"word": w, "start": round(s, 4), "end": round(e, 4)}
                                 for w, (s, e) in zip(words, intervals)]
    if confidences is not None:
        for item, i in zip(out, order):
            item["confidence"] = confidences[i]
    return out


def energy_offsets(samples: np.ndarray, starts_s: list[float], limits_s: list[float],
                   below_peak_db: float = 35.0) -> list[float]:
    """Each word's end: the end of the last 10 ms window in [start, limit) whose RMS is within
    ``below_peak_db`` of the clip's loudest window, clamped to the limit (the next word's start);
    a word with no such window gets one window. samples [N] 16 kHz mono."""
    win = SAMPLE_RATE // 100
    n = samples.size // win
    rms = np.sqrt((samples[: n * win].astype(np.float64).reshape(n, win) ** 2).mean(1))
    loud = rms >= rms.max(initial=0.0) * 10 ** (-below_peak_db / 20) if rms.max(initial=0.0) > 0 else rms > 0
    out = []
    for start, limit in zip(starts_s, limits_s):
        lo, hi = int(start * SAMPLE_RATE) // win, int(np.ceil(limit * SAMPLE_RATE / win))
        hits = np.nonzero(loud[lo:hi])[0]
        end = (lo + hits[-1] + 1) * win / SAMPLE_RATE if hits.size else start + win / SAMPLE_RATE
        out.append(min(max(end, start), limit))
    return out


def event_confidences(curve: torch.Tensor, positions: torch.Tensor, head: str, tolerance_units: float) -> list[float]:
    """One confidence in [0, 1] per decoded position (sub-frames [n]) from the head's curve [T].

    Poisson (log-intensity): the intensity mass within +-``tolerance_units`` of the time, rescaled so
    the whole curve holds the n decoded events (n * Lam(window) / Lam(T): given n, the expected
    number of events in the window), capped at 1. Not the posterior of the i-th ordered event
    (Beta(i, n-i+1) under u = Lam(t)/Lam(T)): that also spreads over *which* peak is the i-th, so
    twenty perfectly placed words, one unit-mass peak each, would read about 0.25.
    Binary (logits): the peak probability, sigmoid of the logit at the predicted sub-frame.
    """
    n, t_frames = positions.numel(), curve.numel()
    if n == 0:
        return []
    x, pos = curve.to(torch.float64), positions.to(torch.float64)
    if head != "poisson":
        return torch.sigmoid(x[pos.floor().long().clamp(0, t_frames - 1)]).tolist()
    lam = torch.exp(x - x.max())  # scale-free: only ratios matter
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(lam, 0)])  # Lam at sub-frame edges [T+1]

    def big_lambda(p: torch.Tensor) -> torch.Tensor:  # Lam at continuous positions, linear inside a sub-frame
        p = p.clamp(0, t_frames)
        f = p.floor().long().clamp(max=t_frames - 1)
        return cum[f] + (p - f) * lam[f]

    window = big_lambda(pos + tolerance_units) - big_lambda(pos - tolerance_units)  # [n]
    return (n * window / cum[-1]).clamp(0.0, 1.0).tolist()


AudioInput = Union[np.ndarray, str, Path, bytes]


def as_samples(audio: AudioInput) -> np.ndarray:
    """float32 [N] 16 kHz mono from samples (taken as they are), a file path or file bytes (decoded,
    resampled, validated: an :class:`~framecall.audio.io.AudioError` names the file)."""
    if isinstance(audio, np.ndarray):
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"audio samples must be a non-empty mono array [N], got shape {audio.shape}")
        return audio.astype(np.float32, copy=False)
    from framecall.audio.io import decode_audio

    return decode_audio(audio, target_sr=SAMPLE_RATE)[0]


def transcript_words(transcript: str) -> list[str]:
    return transcript.split()


def alignment_query(samples: np.ndarray, transcript: str) -> Query:
    return Query(samples, alignment_prompt(transcript), num_events=len(transcript_words(transcript)))

