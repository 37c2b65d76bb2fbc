"""What the Serve deployments do, without Ray Serve: settings, checkpoint admission, the
batched frame engine (featurize, forward, stitch long audio, decode), question types and
the alignment output formats. ``framecall.serve_app`` wraps this in deployments.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framecall.audio.features import log_mel
from framecall.data.collate import pad_features
from framecall.frames.alignment import detect_speech_end, word_intervals
from framecall.frames.decoding import DECODERS, decode, decoder_serves, expected_count
from framecall.frames.units import FrameGrid
from framecall.prompts import alignment_prompt, task_of

SAMPLE_RATE = 16000
OUTPUT_FORMATS = ("json", "textgrid", "ctm")


@dataclass
class ServeSettings:
    """Arguments of the Serve application (``args:`` in serve/config.yaml)."""

    checkpoint: str = "runs/train_poisson/best"
    """Checkpoint directory, or models:/name/version from ``registry_uri``."""
    allowed_roots: list[str] = field(default_factory=lambda: ["runs"])
    """Checkpoint directories must lie under one of these (relative: to the working directory)."""
    registry_uri: str | None = None
    """The only MLflow tracking/registry server models:/ URIs are read from (None: refuse them
    unless MLFLOW_TRACKING_URI is set in the replica's environment)."""
    model_name: str | None = None
    """Name reported in responses (default: the registered name or the checkpoint directory)."""
    decoder: str | None = None
    """Frame decoder (default: the manifest's default_decoder)."""
    max_audio_seconds: float = 600.0
    max_request_bytes: int = 32 * 1024 * 1024
    """Larger request bodies get 413 before they are read."""
    max_questions: int = 16
    max_events: int = 200
    """num_events above this gets 422."""
    chunk_seconds: float | None = None
    """Window of one forward pass; longer audio is cut in overlapping windows whose intensities
    are stitched. None: the backbone's limit (30 s for Qwen2-Audio; Omni takes any length)."""
    chunk_overlap_seconds: float = 4.0
    api_key_env: str | None = None
    """Name of an environment variable holding the API key; then every request must send it in
    the X-API-Key header. None: no auth (the proxy listens on 127.0.0.1 by default)."""
    max_batch_size: int = 16
    """Queries (question x audio chunk) per forward pass; changeable live through user_config."""
    batch_wait_timeout_s: float = 0.01
    max_ongoing_requests: int = 64
    """Per model replica: at least max_batch_size, or batches cannot fill."""
    max_queued_requests: int = 256
    """Beyond this the ingress answers 503 at once instead of letting callers hang."""

    def __post_init__(self) -> None:
        if self.decoder is not None and self.decoder not in DECODERS:
            raise ValueError(f"decoder {self.decoder!r} unknown; valid: {sorted(DECODERS)}")
        if self.chunk_seconds is not None and self.chunk_seconds <= self.chunk_overlap_seconds:
            raise ValueError("chunk_seconds must exceed chunk_overlap_seconds")
        if self.max_batch_size < 1 or self.batch_wait_timeout_s < 0:
            raise ValueError("max_batch_size must be >= 1 and batch_wait_timeout_s >= 0")


class AdmissionError(PermissionError):
    """A checkpoint outside the configured roots or registry."""


def admit_checkpoint(settings: ServeSettings) -> Path:
    """Resolve the configured checkpoint, refusing anything outside allowed roots / registry."""
    from framecall.models.registry import is_model_uri, resolve_checkpoint

    ref = settings.checkpoint
    if is_model_uri(ref):
        uri = settings.registry_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise AdmissionError(f"{ref}: no registry configured (set registry_uri)")
        return resolve_checkpoint(ref, uri)
    path = Path(ref).expanduser().resolve()
    roots = [Path(r).expanduser().resolve() for r in settings.allowed_roots]
    if not any(path == r or r in path.parents for r in roots):
        raise AdmissionError(f"checkpoint {path} is outside the allowed roots {[str(r) for r in roots]}")
    return path


def question_task(question: str) -> str | None:
    """The task a question asks (the templates each task was trained on, :mod:`framecall.prompts`), or None."""
    return task_of(question)[0]


@dataclass
class Query:
    """One (audio, question) pair for the batched engine."""

    samples: np.ndarray  # [N] float32, 16 kHz mono, validated
    question: str
    num_events: int | None = None
    return_curve: bool = False


def chunk_spans(num_samples: int, window: int | None, overlap: int, align: int) -> list[tuple[int, int]]:
    """[start, end) sample spans covering the audio; starts on multiples of ``align`` (one audio
    token) so every chunk's frame grid coincides with the whole recording's."""
    if window is None or num_samples <= window:
        return [(0, num_samples)]
    step = max(align, (window - overlap) // align * align)
    spans, start = [], 0
    while True:
        end = min(start + window, num_samples)
        spans.append((start, end))
        if end >= num_samples:
            return spans
        start += step


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


class FrameEngine:
    """A frame-head checkpoint served in batches. ``predict(queries) -> results``."""

    def __init__(self, settings: ServeSettings) -> None:
        from framecall.models.frame_model import load_frame_model

        self.settings = settings
        ckpt = admit_checkpoint(settings)
        self.model, self.manifest = load_frame_model(ckpt)
        self.manifest.check(settings.checkpoint, frame_head=True)
        self.head = self.manifest.head
        self.decoder = settings.decoder or self.manifest.default_decoder
        if not decoder_serves(self.decoder, self.head):
            raise ValueError(f"decoder {self.decoder!r} needs a Poisson head; this checkpoint has a {self.head} one")
        self.grid = FrameGrid(self.manifest.frame_s, self.manifest.subframes)
        self.features = self.manifest.features
        self.tasks = list(self.manifest.tasks)
        limit = settings.chunk_seconds or self.model.backbone.max_audio_seconds
        self.window = int(limit * SAMPLE_RATE) if limit else None
        self.overlap = int(settings.chunk_overlap_seconds * SAMPLE_RATE)
        self.token_samples = int(round(self.grid.frame_s * SAMPLE_RATE))
        name = settings.model_name or (settings.checkpoint.split("/")[1] if settings.checkpoint.startswith("models:/")
                                       else Path(settings.checkpoint).name)
        version = (settings.checkpoint.rstrip("/").split("/")[-1] if settings.checkpoint.startswith("models:/")
                   else f"step-{self.manifest.global_step}")
        self.info = {"name": name, "version": version, "head": self.head, "loss": self.manifest.loss,
                     "decoder": self.decoder, "tasks": self.tasks, "backbone": self.manifest.backbone,
                     "git_sha": self.manifest.git_sha}

    @torch.no_grad()
    def predict(self, queries: list[Query]) -> list[dict[str, Any]]:
        rows: list[tuple[int, int]] = []  # (query index, chunk start sample)
        feats, prompts = [], []
        for qi, q in enumerate(queries):
            for start, end in chunk_spans(q.samples.size, self.window, self.overlap, self.token_samples):
                rows.append((qi, start))
                feats.append(log_mel(q.samples[start:end], self.features))
                prompts.append(q.question)
        features, feature_mask, token_mask, _ = pad_features(feats, self.model.backbone.tokens_for_frames)
        batch = {"features": features, "feature_mask": feature_mask, "token_mask": token_mask, "prompts": prompts}
        scores, mask = self.model(batch)  # [R, T], [R, T]
        scores = scores.float().cpu()
        per_query: dict[int, tuple[list, list]] = {}
        unit = self.token_samples // self.grid.subframes  # samples per sub-frame
        for r, (qi, start) in enumerate(rows):
            curves, offsets = per_query.setdefault(qi, ([], []))
            curves.append(scores[r][mask[r].cpu()])
            offsets.append(start // unit)
        results = []
        for qi, q in enumerate(queries):
            curve = stitch(*per_query[qi])  # [T]
            estimate = expected_count(curve) if self.head == "poisson" else None
            n = q.num_events
            if n is not None:
                n = min(n, curve.numel())
            pos = decode(self.decoder, curve, n, head=self.head,
                         min_separation=self.manifest.nms_min_separation)
            times = [round(float(t), 4) for t in self.grid.to_seconds(pos)]
            result = {"times_s": times, "num_events": len(times),
                      "count_estimate": None if estimate is None else round(estimate, 3),
                      "chunks": len(per_query[qi][0])}
            if q.return_curve:
                result["curve"] = {"unit_s": self.grid.unit_s, "kind": "log_intensity" if self.head == "poisson"
                                   else "logit", "values": [round(float(v), 5) for v in curve]}
            results.append(result)
        return results


def align_words(words: list[str], times_s: list[float], samples: np.ndarray) -> list[dict[str, Any]]:
    """Word starts -> [{word, start, end}]: end = next start, the last ends where speech ends."""
    end_s = detect_speech_end(samples, SAMPLE_RATE)
    intervals = word_intervals(times_s, max(end_s, max(times_s, default=0.0)))
    return [{"word": w, "start": round(s, 4), "end": round(e, 4)} for w, (s, e) in zip(words, intervals)]


def transcript_words(transcript: str) -> list[str]:
    return transcript.split()


def format_alignment(words: list[dict[str, Any]], fmt: str, duration_s: float, utterance: str = "utt") -> str:
    """TextGrid (long format, Montreal Forced Aligner's default) or CTM (NeMo Forced Aligner's)."""
    if fmt == "ctm":  # <utt> <channel> <start> <duration> <word>
        return "".join(f"{utterance} 1 {w['start']:.3f} {max(0.0, w['end'] - w['start']):.3f} {w['word']}\n"
                       for w in words)
    if fmt == "textgrid":
        from praatio import textgrid

        end = max(duration_s, max((w["end"] for w in words), default=0.0))
        entries, last = [], 0.0
        for w in words:  # praatio refuses overlaps and zero-length intervals: keep them strictly ordered
            start = max(w["start"], last)
            stop = max(w["end"], start + 0.001)
            entries.append((start, stop, w["word"]))
            last = stop
        tier = textgrid.IntervalTier("words", entries, 0.0, max(end, last))
        grid = textgrid.Textgrid()
        grid.addTier(tier)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "out.TextGrid"
            grid.save(str(path), format="long_textgrid", includeBlankSpaces=True, reportingMode="silence")
            return path.read_text()
    raise ValueError(f"unknown format {fmt!r}; valid: {list(OUTPUT_FORMATS)}")


def alignment_query(samples: np.ndarray, transcript: str) -> Query:
    return Query(samples, alignment_prompt(transcript), num_events=len(transcript_words(transcript)))

