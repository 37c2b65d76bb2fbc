"""The Ray Serve application: a FastAPI ingress and a batched frame-model deployment.

    serve run serve/config.yaml                  # or: serve deploy serve/config.yaml
    curl -s 127.0.0.1:8000/healthz

The ingress validates each request (API key, Content-Type, size while streaming, strict JSON or
multipart, text limits, audio) and fans its questions out to ``FrameModelServer.localize``, whose
``@serve.batch`` method featurizes, runs forward passes of at most ``max_batch_size`` rows and
decodes for many queries at once; a query that fails there fails alone (its caller gets a 422,
the rest of its batch its answers). Every error, expected or not, leaves through one mapping
(:func:`classify`) in the shape ``{"error": {"field", "message"}}``: 4xx for the client's input,
503 with Retry-After for back-pressure, a timeout or a lost model replica, 500 for a bug.
Routes and schemas: ``GET /openapi.json`` (``/docs`` for the browser).
"""

# no `from __future__ import annotations`: FastAPI must resolve the route annotations at class creation

import asyncio
import base64
import binascii
import json
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser

from framecall.audio.io import AudioError, AudioTooLongError, decode_audio
from framecall.config import from_dict, to_dict
from framecall.inference import QueryError, check_query
from framecall.prompts import PromptTextError, check_question, check_transcript
from framecall.serving import (
    OUTPUT_FORMATS, Query, ServeSettings, align_words, alignment_query, engine_for, format_alignment,
    transcript_words,
)

logger = logging.getLogger("ray.serve")

API_KEY_HEADER = "X-API-Key"
RETRY_AFTER_S = 1
MAX_JSON_DEPTH = 8  # the deepest valid body is 3 levels (body > questions > question)
TEXT_MEDIA_TYPES = {"vtt": "text/vtt", "srt": "application/x-subrip"}  # others: text/plain
MAX_FORM_PARTS = 8  # audio, questions, return_curve, transcript, format: a few more are an error anyway
INFO_TTL_S = 5.0  # model facts used to check a request are re-read this often (an alias reload changes them)
CANARY_QUESTION = "When does the 1st occurrence of the word 'a' occur?"
# the model replica died, restarts, or cannot take the request now: the client may retry
UNAVAILABLE = (RayActorError, ActorUnavailableError, ReplicaUnavailableError, DeploymentUnavailableError)


def _no_lone_surrogates(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (\\ud800-\\udfff): not valid Unicode text") from None
    return text


Text = Annotated[str, AfterValidator(_no_lone_surrogates)]
Name = Annotated[str, StringConstraints(max_length=32), AfterValidator(_no_lone_surrogates)]
STRICT = ConfigDict(extra="forbid", strict=True)  # unknown fields and "3"/true for a number are errors


class QuestionIn(BaseModel):
    model_config = STRICT
    question: Text = Field(description="e.g. \"When does the 2nd occurrence of the word 'much' occur?\" "
                                       "(at most max_question_chars characters)")
    num_events: int | None = Field(None, description="events to return, 1..max_events; absent: a Poisson head "
                                                     "estimates it (capped at max_events)")
    task: Name | None = Field(None, description="words | words_all | speakers | events; absent: from the question")


class AudioIn(BaseModel):
    model_config = STRICT
    audio_b64: str = Field(description="wav/flac/ogg bytes, base64")


class LocalizeIn(AudioIn):
    questions: list[QuestionIn]
    return_curve: bool = False


class AlignIn(AudioIn):
    transcript: Text = Field(description="the words spoken (at most max_transcript_chars characters)")
    format: Name = "json"


M = TypeVar("M", bound=AudioIn)


class RequestError(Exception):
    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def classify(exc: BaseException) -> tuple[int, str, str]:
    """Any exception a request can end in -> (HTTP status, field, message): the one error mapping."""
    if isinstance(exc, RequestError):
        return exc.status, exc.field, exc.message
    if isinstance(exc, BackPressureError):
        return 503, "body", "the model is overloaded; retry shortly"
    if isinstance(exc, UNAVAILABLE):
        return 503, "model", "the model replica is unavailable (restarting?); retry shortly"
    if isinstance(exc, (PromptTextError, QueryError)):  # text or a query refused on its way to a prompt
        return 422, exc.field, exc.message
    if isinstance(exc, RecursionError):
        return 400, "body", "input nested too deeply"
    if isinstance(exc, StarletteHTTPException):
        field = {404: "path", 405: "method"}.get(exc.status_code, "body")
        return exc.status_code, field, str(exc.detail)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0]
        return 422, ".".join(str(x) for x in first["loc"]) or "body", first["msg"]
    logger.error("unexpected error while answering a request", exc_info=exc)
    return 500, "server", f"internal error ({type(exc).__name__}); the server log has the details"


def error_response(status: int, field: str, message: str, model: dict[str, Any] | None = None) -> Response:
    """The project's error shape. ASCII-escaped JSON: a field name or message quoting the client's
    input can hold anything (lone surrogates included) and must still serialise."""
    body: dict[str, Any] = {"error": {"field": field[:200], "message": message[:2000]}}
    if model is not None:
        body["model"] = model
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return Response(json.dumps(body, ensure_ascii=True), status_code=status, headers=headers,
                    media_type="application/json")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RequestError(422, key, "key given more than once")
        out[key] = value
    return out


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (iterative: the value may be deep), stopping past the limit."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_json(text: str | bytes, field: str) -> Any:
    """Strict JSON: duplicate keys, malformed text and nesting past MAX_JSON_DEPTH are errors naming ``field``."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise RequestError(400, field, "JSON nested too deeply") from None
    except ValueError as e:
        raise RequestError(400, field, f"malformed JSON: {e}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise RequestError(422, field, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def validate(model_cls: type[M], fields: dict[str, Any]) -> M:
    try:
        return model_cls.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        raise RequestError(422, ".".join(str(x) for x in first["loc"]) or "body", first["msg"]) from None


def content_kind(request: Request) -> str:
    """'json' or 'multipart'; any other Content-Type gets 415 (a web page's text/plain form post to the
    loopback service is refused, not parsed as JSON)."""
    ctype = request.headers.get("content-type", "")
    kind = ctype.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        return "json"
    if kind == "multipart/form-data":
        return "multipart"
    raise RequestError(415, "Content-Type", f"expected application/json or multipart/form-data, got {ctype[:100]!r}")


def load_api_key(settings: ServeSettings) -> str | None:
    """The key from ``api_key_file`` or ``api_key_env`` (read in the ingress replica), or None for no auth."""
    if settings.api_key_file:
        path = Path(settings.api_key_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise RuntimeError(f"api_key_file {path}: {e}") from None
        if not lines or not lines[0].strip():
            raise RuntimeError(f"api_key_file {path} is empty")
        return lines[0].strip()
    if settings.api_key_env:
        key = os.environ.get(settings.api_key_env)
        if not key:
            raise RuntimeError(f"api_key_env={settings.api_key_env!r} is set but that variable is empty in the "
                               "ingress replica's environment (use api_key_file to hand a key to a running cluster)")
        return key
    return None


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _within(awaitable, timeout_s: float, what: str):
    """Await a deployment call; past ``timeout_s`` the client gets 503 + Retry-After, not a hang."""
    async def wait():
        return await awaitable

    try:
        return await asyncio.wait_for(wait(), timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(503, "model", f"{what} did not answer within {timeout_s:g} s; retry shortly") from None


@serve.deployment(ray_actor_options={"num_cpus": 1}, health_check_period_s=10, health_check_timeout_s=60)
class FrameModelServer:
    """One replica = one loaded checkpoint; ``localize`` batches queries across requests."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = from_dict(ServeSettings, settings)
        self.engine = engine_for(self.settings)
        self.batch_sizes: list[int] = []  # recent batch sizes (the /v1/model stats)
        self.largest_batch = 0
        self.failed_queries = 0
        self.max_rows = self.settings.max_batch_size
        self.suspect = False  # a whole batch failed: check_health runs a canary query
        self.reconfigure({"max_batch_size": self.settings.max_batch_size,
                          "batch_wait_timeout_s": self.settings.batch_wait_timeout_s})

    def reconfigure(self, config: dict[str, Any]) -> None:
        """user_config: max_batch_size (queries per batch and rows per forward pass), batch_wait_timeout_s
        (changed live by serve deploy)."""
        unknown = set(config) - {"max_batch_size", "batch_wait_timeout_s"}
        if unknown:
            raise ValueError(f"unknown user_config keys {sorted(unknown)}")
        if "max_batch_size" in config:
            self.max_rows = int(config["max_batch_size"])
            self._batch.set_max_batch_size(self.max_rows)  # type: ignore[attr-defined]
        if "batch_wait_timeout_s" in config:
            self._batch.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))  # type: ignore[attr-defined]

    async def localize(self, query: Query) -> dict[str, Any]:
        """One query -> its result, or ``{"error": message}`` when the model cannot process it."""
        return await self._batch(query)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _batch(self, queries: list[Query]) -> list[dict[str, Any]]:
        self.batch_sizes = (self.batch_sizes + [len(queries)])[-1000:]
        self.largest_batch = max(self.largest_batch, len(queries))
        # the forward pass runs off the event loop so the replica keeps answering health checks
        return await asyncio.get_running_loop().run_in_executor(None, self._predict_isolated, queries)

    def _predict_isolated(self, queries: list[Query]) -> list[dict[str, Any]]:
        """One result per query, never one exception for all: serve.batch would hand a raised error to
        every caller in the batch, so a failed batch is retried query by query."""
        try:
            return self.engine.predict(queries, max_rows=self.max_rows)
        except Exception:  # noqa: BLE001 - which query is at fault is found below
            results = [self._predict_one(q) for q in queries]
        self.suspect = all("error" in r for r in results)
        return results

    def _predict_one(self, query: Query) -> dict[str, Any]:
        try:
            return self.engine.predict([query], max_rows=self.max_rows)[0]
        except Exception as e:  # noqa: BLE001 - reported to this query's caller
            self.failed_queries += 1
            logger.warning("query failed alone (%s: %s)", type(e).__name__, e)
            return {"error": f"the model could not process this query ({type(e).__name__}: {str(e)[:300]})"}

    async def check_health(self) -> None:
        """Serve calls this every health_check_period_s; raising restarts the replica. After a batch in
        which every query failed, a canary query (1 s of silence) tells a broken model from bad input."""
        if self.suspect:
            canary = Query(np.zeros(16000, np.float32), CANARY_QUESTION, 1)
            await asyncio.get_running_loop().run_in_executor(None, self.engine.predict, [canary])
            self.suspect = False

    def info(self) -> dict[str, Any]:
        sizes = self.batch_sizes
        return {**self.engine.info, "recent_batches": len(sizes), "largest_batch": self.largest_batch,
                "mean_batch_size": sum(sizes) / len(sizes) if sizes else None, "failed_queries": self.failed_queries}


app = FastAPI(title="framecall", version="1",
              description="Frame-level timestamps from audio language models (framecall). Every error is "
                          '{"error": {"field", "message"}}; 503 comes with Retry-After.')


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """404 (no such route) and 405 (wrong method) in the project's shape, not FastAPI's {"detail"}.
    Registered before serve.ingress(app), which takes the app's handlers as they are then."""
    status, field, message = classify(exc)
    return error_response(status, field, f"{message}: {request.method} {request.url.path[:200]}")


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return error_response(*classify(exc))


@app.exception_handler(Exception)
async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return error_response(*classify(exc))


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
@serve.ingress(app)
class Ingress:
    def __init__(self, model, settings: dict[str, Any]) -> None:
        self.model = model
        self.settings = from_dict(ServeSettings, settings)
        self.api_key = load_api_key(self.settings)
        self._info: dict[str, Any] | None = None
        self._info_at = 0.0
        self._unit_s = 0.01
        self._decoder = ThreadPoolExecutor(self.settings.decode_threads, thread_name_prefix="decode")

    async def model_info(self, fresh: bool = False) -> dict[str, Any]:
        """The model's facts (name, version, head, decoder, tasks), asked of a replica at most every
        INFO_TTL_S (``fresh``: now); a replica that does not answer in health_timeout_s -> 503."""
        if fresh or self._info is None or time.monotonic() - self._info_at > INFO_TTL_S:
            info = await _within(self.model.info.remote(), self.settings.health_timeout_s, "the model replica")
            self._info = {k: info[k] for k in ("name", "version", "head", "decoder", "tasks")}
            self._info_at, self._unit_s = time.monotonic(), info.get("unit_s", self._unit_s)
        return self._info

    async def _run(self, handler, request: Request) -> Any:
        try:
            return await handler(request)
        except Exception as e:  # noqa: BLE001 - every error leaves in the project's shape
            return error_response(*classify(e), model=self._info)

    def _check_key(self, request: Request) -> None:
        if self.api_key is not None:
            sent = request.headers.get(API_KEY_HEADER, "")
            if not secrets.compare_digest(sent.encode(), self.api_key.encode()):
                raise RequestError(401, API_KEY_HEADER, "missing or wrong API key")

    async def _read_body(self, request: Request) -> bytes:
        """The body, counted while it streams in: a chunked (or lying) body stops at the limit."""
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(413, "body", f"request is {declared} bytes, over the limit of {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, "body", f"request is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read(self, request: Request, model_cls: type[M]) -> tuple[M, bytes | str, str]:
        """Key, Content-Type, body -> (the validated model, audio bytes or base64 text, the audio's field)."""
        self._check_key(request)
        kind = content_kind(request)
        body = await self._read_body(request)
        if kind == "multipart":
            fields, audio = await self._form(request, body)
            return validate(model_cls, fields), audio, "audio"
        fields = load_json(body, "body")
        if not isinstance(fields, dict):
            raise RequestError(422, "body", "expected a JSON object")
        parsed = validate(model_cls, fields)
        return parsed, parsed.audio_b64, "audio_b64"

    async def _form(self, request: Request, body: bytes) -> tuple[dict[str, Any], bytes]:
        """Multipart: one file part ``audio``; the others text (``questions`` as JSON), each at most once."""
        s = self.settings
        part_limit = 4 * (s.max_transcript_chars + s.max_questions * s.max_question_chars) + 65536
        parser = MultiPartParser(request.headers, _once(body), max_files=1, max_fields=MAX_FORM_PARTS,
                                 max_part_size=part_limit)
        try:
            form = await parser.parse()
        except Exception as e:  # noqa: BLE001 - starlette's and python-multipart's errors alike
            raise RequestError(400, "body", f"malformed multipart body: {getattr(e, 'message', e)}") from None
        fields: dict[str, Any] = {"audio_b64": ""}
        audio = None
        for key, value in form.multi_items():
            if key in fields or (key == "audio" and audio is not None):
                raise RequestError(422, key, "field given more than once")
            if key == "audio":
                if isinstance(value, str):
                    raise RequestError(422, "audio", "'audio' must be a file part")
                audio = await value.read()
            elif not isinstance(value, str):
                raise RequestError(422, key, "must be a text field, not a file part")
            else:
                fields[key] = value
        await form.close()
        if audio is None:
            raise RequestError(422, "audio", "multipart request needs a file field 'audio'")
        if "questions" in fields:
            fields["questions"] = load_json(fields["questions"], "questions")
        if "return_curve" in fields:
            flag = fields["return_curve"].lower()
            if flag not in ("true", "false", "1", "0"):
                raise RequestError(422, "return_curve", "expected true or false")
            fields["return_curve"] = flag in ("true", "1")
        return fields, audio

    def _decode_now(self, audio: bytes | str, field: str) -> np.ndarray:
        if isinstance(audio, str):
            try:
                audio = base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError) as e:
                raise RequestError(422, field, f"not valid base64: {e}") from None
        try:
            samples, _ = decode_audio(audio, source=field, max_seconds=self.settings.max_audio_seconds)
        except AudioTooLongError as e:
            raise RequestError(413, field, str(e)) from None
        except AudioError as e:
            raise RequestError(422, field, str(e)) from None
        return samples

    async def _decode(self, audio: bytes | str, field: str) -> np.ndarray:
        """Decode in a bounded thread pool: a long decode never stalls the event loop (other requests,
        health checks), and at most decode_threads run at once per ingress replica."""
        return await asyncio.get_running_loop().run_in_executor(self._decoder, self._decode_now, audio, field)

    async def _ask(self, queries: list[Query], fields: list[str]) -> list[dict[str, Any]]:
        """Model calls, one per query (batched across requests by the model deployment); a query the
        model could not process -> 422 naming its field."""
        calls = asyncio.gather(*[self.model.localize.remote(q) for q in queries])
        results = await _within(calls, self.settings.request_timeout_s, "the model")
        for field, result in zip(fields, results):
            if "error" in result:
                raise RequestError(422, field, result["error"])
        return results

    @app.get("/healthz")
    async def healthz(self, request: Request):
        """Asks a model replica now: 200 with the model's facts, or 503 + Retry-After."""
        return await self._run(self._healthz, request)

    async def _healthz(self, request: Request):
        return {"status": "ok", "model": await self.model_info(fresh=True)}

    @app.get("/v1/model")
    async def model_details(self, request: Request):
        return await self._run(self._model_details, request)

    async def _model_details(self, request: Request):
        self._check_key(request)
        return {"model": await _within(self.model.info.remote(), self.settings.health_timeout_s, "the model replica")}

    @app.post("/v1/localize", openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": LocalizeIn.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "audio": {"type": "string", "format": "binary"},
            "questions": {"type": "string", "description": "JSON list of question objects"},
            "return_curve": {"type": "boolean"}}, "required": ["audio", "questions"]}}}, "required": True}})
    async def localize(self, request: Request):
        """Timestamps (seconds) for each question about one recording."""
        return await self._run(self._localize, request)

    def _check_questions(self, parsed: LocalizeIn, info: dict[str, Any]) -> list[tuple[QuestionIn, str | None]]:
        s = self.settings
        if not parsed.questions:
            raise RequestError(422, "questions", "at least one question is needed")
        if len(parsed.questions) > s.max_questions:
            raise RequestError(422, "questions", f"{len(parsed.questions)} questions, over the limit of "
                                                 f"{s.max_questions}")
        checked = []
        for i, q in enumerate(parsed.questions):
            if len(q.question) > s.max_question_chars:
                raise RequestError(422, f"questions.{i}.question", f"{len(q.question)} characters, over the limit "
                                                                   f"of {s.max_question_chars}")
            try:
                check_question(q.question)
                task = check_query(info["head"], info["tasks"], q.question, q.num_events, q.task,
                                   max_events=s.max_events)
            except (PromptTextError, QueryError) as e:
                raise RequestError(422, f"questions.{i}.{e.field}", e.message) from None
            checked.append((q, task))
        return checked

    async def _localize(self, request: Request):
        parsed, audio, source = await self._read(request, LocalizeIn)
        info = await self.model_info()
        checked = self._check_questions(parsed, info)
        samples = await self._decode(audio, source)
        queries = [Query(samples, q.question, q.num_events, parsed.return_curve, self.settings.max_events)
                   for q, _ in checked]
        results = await self._ask(queries, [f"questions.{i}" for i in range(len(queries))])
        return {"model": info, "duration_s": round(samples.size / 16000, 4),
                "answers": [{"question": q.question, "task": task, **r} for (q, task), r in zip(checked, results)]}

    @app.post("/v1/align", openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": AlignIn.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "audio": {"type": "string", "format": "binary"}, "transcript": {"type": "string"},
            "format": {"type": "string", "enum": list(OUTPUT_FORMATS)}}, "required": ["audio", "transcript"]}}},
        "required": True}})
    async def align(self, request: Request):
        """Start and end of every transcript word, as JSON, TextGrid (MFA), CTM (NeMo NFA), SRT or WebVTT."""
        return await self._run(self._align, request)

    def _check_transcript(self, parsed: AlignIn) -> list[str]:
        s = self.settings
        if parsed.format not in OUTPUT_FORMATS:
            raise RequestError(422, "format", f"unknown format {parsed.format!r}; valid: {list(OUTPUT_FORMATS)}")
        if len(parsed.transcript) > s.max_transcript_chars:
            raise RequestError(422, "transcript", f"{len(parsed.transcript)} characters, over the limit of "
                                                  f"{s.max_transcript_chars}")
        words = transcript_words(parsed.transcript)
        if not words:
            raise RequestError(422, "transcript", "transcript is empty")
        if len(words) > s.max_events:
            raise RequestError(422, "transcript", f"{len(words)} words, over the limit of {s.max_events}")
        longest = max(len(w) for w in words)
        if longest > s.max_word_chars:
            raise RequestError(422, "transcript", f"a word of {longest} characters, over the limit of "
                                                  f"{s.max_word_chars}")
        check_transcript(parsed.transcript)  # special tokens: a PromptTextError naming the transcript
        return words

    async def _align(self, request: Request):
        parsed, audio, source = await self._read(request, AlignIn)
        info = await self.model_info()
        if info["tasks"] and "words_all" not in info["tasks"]:
            raise RequestError(404, "path", f"alignment needs a model trained on words_all; this one answers "
                                            f"{info['tasks']}")
        words = self._check_transcript(parsed)
        samples = await self._decode(audio, source)
        duration = samples.size / 16000
        if len(words) > duration / self._unit_s:
            raise RequestError(422, "transcript", f"{len(words)} words cannot fit in {duration:.3f} s of audio "
                                                  f"(at most one per {self._unit_s:g} s)")
        (result,) = await self._ask([alignment_query(samples, parsed.transcript)], ["transcript"])
        if len(result["times_s"]) < len(words):  # never silently fewer words than asked for
            raise RequestError(422, "transcript", f"the model placed only {len(result['times_s'])} of the "
                                                  f"{len(words)} words in {duration:.3f} s of audio")
        # the Python API's words: start confidences, ends at the energy offset (silences between words show)
        aligned = align_words(words, result["times_s"], samples, result["confidences"], ends="energy")
        if parsed.format == "json":
            return {"model": info, "duration_s": round(duration, 4), "words": aligned}
        text = format_alignment(aligned, parsed.format, duration)
        model_header = {"X-Framecall-Model": f"{info['name']}/{info['version']} ({info['head']})"}
        return PlainTextResponse(text, headers=model_header, media_type=TEXT_MEDIA_TYPES.get(parsed.format))


def build_app(args: dict[str, Any]):
    """Application builder (``import_path: framecall.serve_app:build_app``); ``args`` = ServeSettings."""
    from framecall.runtime import actor_options

    settings = from_dict(ServeSettings, args)
    if settings.api_key_file:  # replicas may run elsewhere: hand them an absolute path (never the key)
        settings.api_key_file = str(Path(settings.api_key_file).expanduser().resolve())
    plain = to_dict(settings)
    # serve.deployment adds .options/.bind, which the type checker cannot see
    model = FrameModelServer.options(  # type: ignore[attr-defined]
        ray_actor_options=actor_options("model_num_cpus, model_num_gpus", settings.model_num_cpus,
                                        settings.model_num_gpus),
        num_replicas=settings.model_replicas, max_ongoing_requests=settings.max_ongoing_requests, max_queued_requests=settings.max_queued_requests,
        user_config={"max_batch_size": settings.max_batch_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s},
    ).bind(plain)
    # the ingress must admit as many requests as the model may hold (Serve's default is 5: batches
    # could not fill) and more, so that overload reaches the model's queue and comes back as 503
    # instead of waiting in the proxy
    return Ingress.options(  # type: ignore[attr-defined]
        max_ongoing_requests=settings.max_ongoing_requests + settings.max_queued_requests + 1).bind(model, plain)


__all__ = ["build_app", "app", "FrameModelServer", "Ingress", "classify", "error_response"]


def start_http_proxy(host: str, port: int, request_timeout_s: float | None = None) -> str:
    """Start Serve's HTTP proxy on host:port and return its URL. Serve keeps the options of its
    first start: when it already runs elsewhere, say so instead of sending requests to a port
    nothing listens on."""
    from ray.serve.context import _get_global_client  # the only way to read the running proxy's options

    options: dict[str, Any] = {"host": host, "port": port}
    if request_timeout_s is not None:
        options["request_timeout_s"] = request_timeout_s
    serve.start(http_options=options)
    actual = _get_global_client().http_config
    if (actual.host, actual.port) != (host, port):
        raise RuntimeError(f"Ray Serve already runs with its HTTP proxy on {actual.host}:{actual.port}, not "
                           f"{host}:{port}; use that port, or `serve shutdown` first")
    return f"http://{host}:{port}"
