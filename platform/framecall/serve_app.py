"""The Ray Serve application: a FastAPI ingress and a batched frame-model deployment.

    serve run serve/config.yaml                  # or: serve deploy serve/config.yaml
    curl -s 127.0.0.1:8000/healthz

The ingress validates each request (audio, questions, formats, size, API key) and fans its
questions out to ``FrameModelServer.localize``, a ``@serve.batch`` method that featurizes,
runs one forward pass and decodes for many queries at once. Overload of the model
deployment (``max_queued_requests``) reaches the ingress as ``BackPressureError`` -> 503.
Routes and schemas: ``GET /openapi.json`` (``/docs`` for the browser).
"""

# no `from __future__ import annotations`: FastAPI must resolve the route annotations at class creation

import asyncio
import base64
import binascii
import json
import os
import secrets
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError

from framecall.audio.io import AudioError, AudioTooLongError, decode_audio
from framecall.config import from_dict, to_dict
from framecall.inference import QueryError, check_query
from framecall.serving import (
    OUTPUT_FORMATS, Query, ServeSettings, align_words, alignment_query, engine_for, format_alignment,
    transcript_words,
)

API_KEY_HEADER = "X-API-Key"


class QuestionIn(BaseModel):
    question: str = Field(description="e.g. \"When does the 2nd occurrence of the word 'much' occur?\"")
    num_events: int | None = Field(None, description="events to return; absent: a Poisson head estimates it")
    task: str | None = Field(None, description="words | words_all | speakers | events; absent: from the question")


class AudioIn(BaseModel):
    audio_b64: str = Field(description="wav/flac/ogg bytes, base64")


class LocalizeIn(AudioIn):
    questions: list[QuestionIn]
    return_curve: bool = False


class AlignIn(AudioIn):
    transcript: str
    format: str = "json"


M = TypeVar("M", bound=AudioIn)


class RequestError(Exception):
    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


@serve.deployment(ray_actor_options={"num_cpus": 1})
class FrameModelServer:
    """One replica = one loaded checkpoint; ``localize`` batches queries across requests."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = from_dict(ServeSettings, settings)
        self.engine = engine_for(self.settings)
        self.batch_sizes: list[int] = []  # recent batch sizes (the /v1/model stats)
        self.largest_batch = 0
        self.reconfigure({"max_batch_size": self.settings.max_batch_size,
                          "batch_wait_timeout_s": self.settings.batch_wait_timeout_s})

    def reconfigure(self, config: dict[str, Any]) -> None:
        """user_config: max_batch_size, batch_wait_timeout_s (changed live by serve deploy)."""
        unknown = set(config) - {"max_batch_size", "batch_wait_timeout_s"}
        if unknown:
            raise ValueError(f"unknown user_config keys {sorted(unknown)}")
        if "max_batch_size" in config:
            self.localize.set_max_batch_size(int(config["max_batch_size"]))  # type: ignore[attr-defined]
        if "batch_wait_timeout_s" in config:
            self.localize.set_batch_wait_timeout_s(  # type: ignore[attr-defined]
                float(config["batch_wait_timeout_s"]))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def localize(self, queries: list[Query]) -> list[dict[str, Any]]:
        self.batch_sizes = (self.batch_sizes + [len(queries)])[-1000:]
        self.largest_batch = max(self.largest_batch, len(queries))
        # the forward pass runs off the event loop so the replica keeps answering health checks
        return await asyncio.get_running_loop().run_in_executor(None, self.engine.predict, queries)

    def info(self) -> dict[str, Any]:
        sizes = self.batch_sizes
        return {**self.engine.info, "recent_batches": len(sizes), "largest_batch": self.largest_batch,
                "mean_batch_size": sum(sizes) / len(sizes) if sizes else None}


app = FastAPI(title="framecall", version="1",
              description="Frame-level timestamps from audio language models (framecall).")


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
@serve.ingress(app)
class Ingress:
    def __init__(self, model, settings: dict[str, Any]) -> None:
        self.model = model
        self.settings = from_dict(ServeSettings, settings)
        self.api_key = None
        if self.settings.api_key_env:
            self.api_key = os.environ.get(self.settings.api_key_env)
            if not self.api_key:
                raise RuntimeError(f"api_key_env={self.settings.api_key_env!r} is set but that variable is empty")
        self._info: dict[str, Any] | None = None

    async def model_info(self) -> dict[str, Any]:
        if self._info is None:
            info = await self.model.info.remote()
            self._info = {k: info[k] for k in ("name", "version", "head", "decoder", "tasks")}
        return self._info

    async def _error(self, status: int, field: str, message: str) -> JSONResponse:
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"error": {"field": field, "message": message}, "model": await self.model_info()},
                            status_code=status, headers=headers)

    async def _guard(self, request: Request) -> bytes:
        """API key and size limit; -> the raw body."""
        if self.api_key is not None:
            sent = request.headers.get(API_KEY_HEADER, "")
            if not secrets.compare_digest(sent.encode(), self.api_key.encode()):
                raise RequestError(401, API_KEY_HEADER, "missing or wrong API key")
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, "body", f"request is {declared} bytes, over the limit of {limit}")
        body = await request.body()
        if len(body) > limit:
            raise RequestError(413, "body", f"request is {len(body)} bytes, over the limit of {limit}")
        return body

    async def _parse(self, request: Request, model_cls: type[M], body: bytes) -> tuple[M, bytes, str]:
        """JSON (audio base64) or multipart (file ``audio`` + the other fields; ``questions`` as JSON)."""
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("audio")
            if upload is None or isinstance(upload, str):
                raise RequestError(422, "audio", "multipart request needs a file field 'audio'")
            audio = await upload.read()
            fields: dict[str, Any] = {k: v for k, v in form.items() if k != "audio"}
            for key in ("questions",):
                if key in fields:
                    try:
                        fields[key] = json.loads(fields[key])
                    except ValueError as e:
                        raise RequestError(422, key, f"not valid JSON: {e}") from None
            if "return_curve" in fields:
                fields["return_curve"] = str(fields["return_curve"]).lower() in ("1", "true", "yes")
            fields["audio_b64"] = ""
            source = "audio"
        else:
            try:
                fields = json.loads(body)
            except ValueError as e:
                raise RequestError(400, "body", f"malformed JSON: {e}") from None
            if not isinstance(fields, dict):
                raise RequestError(422, "body", "expected a JSON object")
            audio, source = None, "audio_b64"
        try:
            parsed = model_cls.model_validate(fields)
        except ValidationError as e:
            first = e.errors()[0]
            raise RequestError(422, ".".join(str(x) for x in first["loc"]) or "body", first["msg"]) from None
        if audio is None:
            try:
                audio = base64.b64decode(parsed.audio_b64, validate=True)
            except (binascii.Error, ValueError) as e:
                raise RequestError(422, "audio_b64", f"not valid base64: {e}") from None
        return parsed, audio, source

    def _decode(self, audio: bytes, field: str):
        try:
            samples, _ = decode_audio(audio, source=field, max_seconds=self.settings.max_audio_seconds)
        except AudioTooLongError as e:
            raise RequestError(413, field, str(e)) from None
        except AudioError as e:
            raise RequestError(422, field, str(e)) from None
        return samples

    async def _ask(self, queries: list[Query]) -> list[dict[str, Any]]:
        try:
            return list(await asyncio.gather(*[self.model.localize.remote(q) for q in queries]))
        except BackPressureError:
            raise RequestError(503, "body", "the model is overloaded; retry shortly") from None

    async def _run(self, handler, request: Request):
        try:
            return await handler(request)
        except RequestError as e:
            return await self._error(e.status, e.field, e.message)

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model": await self.model_info()}

    @app.get("/v1/model")
    async def model_details(self) -> dict[str, Any]:
        return {"model": await self.model.info.remote()}

    @app.post("/v1/localize", openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": LocalizeIn.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "audio": {"type": "string", "format": "binary"},
            "questions": {"type": "string", "description": "JSON list of question objects"},
            "return_curve": {"type": "boolean"}}, "required": ["audio", "questions"]}}}, "required": True}})
    async def localize(self, request: Request):
        """Timestamps (seconds) for each question about one recording."""
        return await self._run(self._localize, request)

    async def _localize(self, request: Request):
        body = await self._guard(request)
        parsed, audio, source = await self._parse(request, LocalizeIn, body)
        info = await self.model_info()
        if not parsed.questions:
            raise RequestError(422, "questions", "at least one question is needed")
        if len(parsed.questions) > self.settings.max_questions:
            raise RequestError(422, "questions", f"{len(parsed.questions)} questions, over the limit of "
                                                 f"{self.settings.max_questions}")
        checked = []
        for i, q in enumerate(parsed.questions):
            try:
                task = check_query(info["head"], info["tasks"], q.question, q.num_events, q.task,
                                   max_events=self.settings.max_events)
            except QueryError as e:
                raise RequestError(422, f"questions.{i}.{e.field}", e.message) from None
            checked.append((q, task))
        samples = self._decode(audio, source)
        results = await self._ask([Query(samples, q.question, q.num_events, parsed.return_curve) for q, _ in checked])
        return {"model": info, "duration_s": round(samples.size / 16000, 4),
                "answers": [{"question": q.question, "task": task, **r} for (q, task), r in zip(checked, results)]}

    @app.post("/v1/align", openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": AlignIn.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "audio": {"type": "string", "format": "binary"}, "transcript": {"type": "string"},
            "format": {"type": "string", "enum": list(OUTPUT_FORMATS)}}, "required": ["audio", "transcript"]}}},
        "required": True}})
    async def align(self, request: Request):
        """Start and end of every transcript word, as JSON, TextGrid (MFA) or CTM (NeMo NFA)."""
        return await self._run(self._align, request)

    async def _align(self, request: Request):
        body = await self._guard(request)
        info = await self.model_info()
        if info["tasks"] and "words_all" not in info["tasks"]:
            raise RequestError(404, "path", f"alignment needs a model trained on words_all; this one answers "
                                            f"{info['tasks']}")
        parsed, audio, source = await self._parse(request, AlignIn, body)
        if parsed.format not in OUTPUT_FORMATS:
            raise RequestError(422, "format", f"unknown format {parsed.format!r}; valid: {list(OUTPUT_FORMATS)}")
        words = transcript_words(parsed.transcript)
        if not words:
            raise RequestError(422, "transcript", "transcript is empty")
        if len(words) > self.settings.max_events:
            raise RequestError(422, "transcript", f"{len(words)} words, over the limit of {self.settings.max_events}")
        samples = self._decode(audio, source)
        (result,) = await self._ask([alignment_query(samples, parsed.transcript)])
        aligned = align_words(words, result["times_s"], samples)
        duration = samples.size / 16000
        if parsed.format == "json":
            return {"model": info, "duration_s": round(duration, 4), "words": aligned}
        text = format_alignment(aligned, parsed.format, duration)
        model_header = {"X-Framecall-Model": f"{info['name']}/{info['version']} ({info['head']})"}
        return PlainTextResponse(text, headers=model_header)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    return JSONResponse({"error": {"field": ".".join(str(x) for x in first["loc"]), "message": first["msg"]}},
                        status_code=422)


def build_app(args: dict[str, Any]):
    """Application builder (``import_path: framecall.serve_app:build_app``); ``args`` = ServeSettings."""
    settings = from_dict(ServeSettings, args)
    plain = to_dict(settings)
    # serve.deployment adds .options/.bind, which the type checker cannot see
    model = FrameModelServer.options(  # type: ignore[attr-defined]
        max_ongoing_requests=settings.max_ongoing_requests, max_queued_requests=settings.max_queued_requests,
        user_config={"max_batch_size": settings.max_batch_size, "batch_wait_timeout_s": settings.batch_wait_timeout_s},
    ).bind(plain)
    # the ingress must admit as many requests as the model may hold (Serve's default is 5: batches
    # could not fill) and more, so that overload reaches the model's queue and comes back as 503
    # instead of waiting in the proxy
    options: dict[str, Any] = {"max_ongoing_requests": settings.max_ongoing_requests
                               + settings.max_queued_requests + 1}
    if settings.api_key_env and os.environ.get(settings.api_key_env):
        # the builder's process has the key (serve run, or a test): hand it to the ingress
        # replica, which otherwise sees only its node's environment
        options["ray_actor_options"] = {
            "num_cpus": 0.5, "runtime_env": {"env_vars": {settings.api_key_env: os.environ[settings.api_key_env]}}}
    return Ingress.options(**options).bind(model, plain)  # type: ignore[attr-defined]


__all__ = ["build_app", "app", "FrameModelServer", "Ingress"]


def start_http_proxy(host: str, port: int) -> str:
    """Start Serve's HTTP proxy on host:port and return its URL. Serve keeps the options of its
    first start: when it already runs elsewhere, say so instead of sending requests to a port
    nothing listens on."""
    from ray.serve.context import _get_global_client  # the only way to read the running proxy's options

    serve.start(http_options={"host": host, "port": port})
    actual = _get_global_client().http_config
    if (actual.host, actual.port) != (host, port):
        raise RuntimeError(f"Ray Serve already runs with its HTTP proxy on {actual.host}:{actual.port}, not "
                           f"{host}:{port}; use that port, or `serve shutdown` first")
    return f"http://{host}:{port}"
