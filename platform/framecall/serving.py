"""What the Serve deployments add around the engine, without Ray Serve: settings, checkpoint
admission, question types and the alignment output formats. The engine itself is
:class:`framecall.inference.FrameLocalizer`; ``framecall.serve_app`` wraps both in deployments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framecall.frames.decoding import DECODERS
from framecall.inference import (SAMPLE_RATE, FrameLocalizer, Query, align_words, alignment_query,  # noqa: F401
                                 chunk_spans, stitch, transcript_words)
from framecall.prompts import task_of
OUTPUT_FORMATS = ("json", "textgrid", "ctm", "srt", "vtt")
"""Alignment outputs: JSON, TextGrid (MFA), CTM (NeMo NFA), SubRip and WebVTT subtitles (a cue per word)."""


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
    """num_events above this gets 422; a count the Poisson head estimates is capped at it; an
    alignment transcript of more words gets 422."""
    chunk_seconds: float | None = None
    """Window of one forward pass; longer audio is cut in overlapping windows whose intensities
    are stitched. None: the backbone's limit (30 s for Qwen2-Audio; Omni takes any length)."""
    chunk_overlap_seconds: float = 4.0
    max_question_chars: int = 1000
    """Longer questions get 422 (questions.i.question)."""
    max_transcript_chars: int = 20_000
    """Longer alignment transcripts get 422 (transcript)."""
    max_word_chars: int = 100
    """A transcript word longer than this gets 422 (transcript)."""
    api_key_env: str | None = None
    """Name of an environment variable holding the API key, read by the ingress replica from its
    own environment (the node's); then every request must send it in the X-API-Key header.
    None (and no api_key_file): no auth (the proxy listens on 127.0.0.1 by default)."""
    api_key_file: str | None = None
    """A file holding the API key (first line), read by the ingress replica; the key itself never
    travels in the application's config or runtime_env (both are shown by the dashboard)."""
    request_timeout_s: float = 60.0
    """A request whose model calls take longer gets 503 with Retry-After."""
    health_timeout_s: float = 5.0
    """/healthz asks the model replica and answers 503 when it does not reply within this."""
    decode_threads: int = 2
    """Threads decoding audio off the ingress event loop (bounds concurrent decodes per replica)."""
    model_replicas: int = 1
    """Replicas of the model deployment (a ``deployments:`` entry in serve/config.yaml overrides it)."""
    model_num_cpus: float = 1.0
    """CPUs each model replica holds."""
    model_num_gpus: float = 0.0
    """GPUs each model replica holds (0.5: two replicas share one GPU); 0 on CPU clusters."""
    device: str = "auto"
    """Where a replica loads the model: auto (the GPU it was given when model_num_gpus > 0, else cpu) | cpu |
    cuda | cuda:N."""
    dtype: str = "auto"
    """auto (bf16 on a CUDA device that supports it, else fp32) | float32 | bfloat16 | float16."""
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
        if self.api_key_env and self.api_key_file:
            raise ValueError("set api_key_env or api_key_file, not both")
        if min(self.max_question_chars, self.max_transcript_chars, self.max_word_chars, self.decode_threads) < 1:
            raise ValueError("max_question_chars, max_transcript_chars, max_word_chars and decode_threads must be >= 1")
        if self.request_timeout_s <= 0 or self.health_timeout_s <= 0:
            raise ValueError("request_timeout_s and health_timeout_s must be > 0")
        from framecall.runtime import DTYPES, check_resources

        check_resources("model_num_cpus, model_num_gpus", self.model_num_cpus, self.model_num_gpus)
        if self.dtype not in ("auto", *DTYPES):
            raise ValueError(f"dtype {self.dtype!r} unknown; valid: auto, {', '.join(DTYPES)}")


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


def format_alignment(words: list[dict[str, Any]], fmt: str, duration_s: float, utterance: str = "utt") -> str:
    """TextGrid (long format, Montreal Forced Aligner's default), CTM (NeMo Forced Aligner's), SRT or
    WebVTT, written by :mod:`framecall.formats` (the Python API's writers)."""
    from framecall import formats

    if fmt == "ctm":
        return formats.write_ctm(words, utterance)
    if fmt == "textgrid":
        return formats.write_textgrid(words, duration_s)
    if fmt == "srt":
        return formats.write_srt(words)
    if fmt == "vtt":
        return formats.write_vtt(words)
    raise ValueError(f"unknown format {fmt!r}; valid: {list(OUTPUT_FORMATS)}")


def engine_for(settings: ServeSettings) -> FrameLocalizer:
    """The engine of a Serve replica: the admitted checkpoint with the app's decoder and chunking."""
    ref, version = settings.checkpoint, None
    if ref.startswith("models:/"):  # an alias or latest is pinned to the version it names now, which is shown
        from dataclasses import replace

        from framecall.models.registry import model_version

        uri = settings.registry_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise AdmissionError(f"{ref}: no registry configured (set registry_uri)")
        registered, version = model_version(ref, uri)
        settings = replace(settings, checkpoint=f"models:/{registered}/{version}")
    name = settings.model_name or (ref[len("models:/"):].split("/")[0].split("@")[0] if version else Path(ref).name)
    admitted = admit_checkpoint(settings)
    # every file the checkpoint names (its symlinks, a local backbone) is held to the same roots
    roots = [*settings.allowed_roots, *([str(admitted)] if version else [])]
    from framecall.runtime import placed_device

    return FrameLocalizer.from_pretrained(admitted, device=placed_device(settings.model_num_gpus, settings.device),
                                          dtype=settings.dtype, decoder=settings.decoder, allowed_roots=roots,
                                          chunk_seconds=settings.chunk_seconds,
                                          chunk_overlap_seconds=settings.chunk_overlap_seconds, name=name,
                                          version=version)
