"""Table 1: zero-shot timestamps from any audio LM (issue #21).

Each shard row's own question (the paper's prompts, :mod:`framecall.prompts`) is asked with the
JSON answer format spelled out (:func:`zero_shot_prompt`); the answer is generated greedily and
read leniently (:func:`framecall.token_answers.parse_timestamps`); text that yields no timestamp
is a parse failure, scored as a miss and counted. Two kinds of model answer:

- :class:`LocalAudioLM`: a Hugging Face audio LM (Qwen2-Audio, Qwen2.5-Omni thinker, a tiny preset,
  a framecall checkpoint), batched on the device :func:`framecall.runtime.choose_device` picks.
- :class:`ChatEndpoint` (``openai:URL``): an OpenAI-compatible ``/v1/chat/completions`` endpoint with
  the audio as an ``input_audio`` content part (base64 wav); requests run ``concurrency`` at a time,
  429/5xx answers and dropped connections are retried with backoff, a request that gets no answer
  within ``timeout_s`` fails naming it, and the API key comes from an environment variable only.

The table (:func:`table1`) is the paper's layout: one row per model; words tasks scored at
20/40 ms, speakers and events at 40/100 ms, each with MAD and the parse-failure rate.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from framecall.metrics import TimestampMetrics, tolerance_name
from framecall.token_answers import parse_timestamps

log = logging.getLogger(__name__)

TASK_TOLERANCES_S = {"words": (0.02, 0.04), "words_all": (0.02, 0.04),
                     "speakers": (0.04, 0.10), "events": (0.04, 0.10)}
"""The paper's Table 1 columns: word timing at 20/40 ms, speaker and event onsets at 40/100 ms."""
ANSWER_EXAMPLES = {
    "words": '[{"word": "much", "start": 0.63}]',
    "words_all": '[{"word": "much", "start": 0.63}, {"word": "water", "start": 0.91}]',
    "speakers": '[{"speaker": 2, "start": 4.25}]',
    "events": '[{"event": "chirp", "start": 1.5}]',
}
"""The token baseline's JSON targets (paper appendix; ``token_answers.format_word_times``
json_objects), shown to the model as the answer format."""
API_PREFIX = "openai:"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class ZeroShotError(ValueError):
    """Bad input to a zero-shot run: a model, a data row, an endpoint or the API key, named."""


def zero_shot_prompt(task: str, question: str) -> str:
    """The row's question plus the JSON answer format (what the token baseline is trained to print)."""
    if task not in ANSWER_EXAMPLES:
        raise ZeroShotError(f"task {task!r} has no zero-shot answer format; valid: {list(ANSWER_EXAMPLES)}")
    what = "one object per word of the transcript, in order" if task == "words_all" else "one object"
    return (f"{question} Answer only with a JSON list ({what}), start times in seconds from the beginning "
            f"of the audio, for example: {ANSWER_EXAMPLES[task]}")


# ---------------------------------------------------------------- items

@dataclass
class ZeroShotItem:
    id: str
    task: str
    question: str
    audio: bytes
    """The shard's encoded audio (flac)."""
    gold_s: list[float]
    duration_s: float
    source: str
    """Where the row came from: ``shard path row i``."""


def load_items(data_dirs: Sequence[str | Path], split: str | None = None, limit: int | None = None) -> list[ZeroShotItem]:
    """The rows of each shard directory (of ``split`` when given; the first ``limit`` per directory)."""
    from framecall.data.shards import list_shards, read_shard

    items: list[ZeroShotItem] = []
    for data_dir in data_dirs:
        taken = 0
        for path in list_shards(data_dir):
            for i, row in enumerate(read_shard(path).to_pylist()):
                if limit is not None and taken >= limit:
                    break
                if split is not None and row["split"] != split:
                    continue
                items.append(_item(row, f"{path} row {i}"))
                taken += 1
        if taken == 0:
            raise ZeroShotError(f"--data {data_dir}: no rows" + (f" in split {split!r}" if split else ""))
    return items


def _item(row: dict[str, Any], source: str) -> ZeroShotItem:
    if row["task"] not in TASK_TOLERANCES_S:
        raise ZeroShotError(f"{source} (id {row['id']!r}): task {row['task']!r} is not a timestamp task; "
                            f"valid: {list(TASK_TOLERANCES_S)}")
    if not row["event_times_s"]:
        raise ZeroShotError(f"{source} (id {row['id']!r}): event_times_s is empty (nothing to score)")
    return ZeroShotItem(str(row["id"]), row["task"], row["prompt"], bytes(row["audio"]),
                        [float(t) for t in row["event_times_s"]], float(row["duration_s"]), source)


def _decode(item: ZeroShotItem) -> np.ndarray:
    from framecall.audio.io import decode_audio

    return decode_audio(item.audio, source=f"{item.source} audio")[0]  # mono float32 [N] at 16 kHz


# ---------------------------------------------------------------- models

class AnswerSource(Protocol):
    """Anything that answers items with text, in order."""

    name: str

    def answer(self, items: list[ZeroShotItem]) -> list[str]: ...


def check_audio_lm(model: str) -> None:
    """Refuse a model without an audio encoder (a text-only LM) before loading its weights."""
    from transformers import AutoConfig

    from framecall.models.backbone import SUPPORTED_MODEL_TYPES, resolve_model_path

    if (Path(model) / "manifest.json").is_file() or model.startswith("models:/"):
        return  # a framecall checkpoint: its manifest names an audio backbone
    config = AutoConfig.from_pretrained(resolve_model_path(model))
    config = getattr(config, "thinker_config", None) or config
    if getattr(config, "audio_config", None) is None:
        raise ZeroShotError(f"--model {model}: model_type {config.model_type!r} has no audio encoder (a text-only "
                            f"model cannot hear the clip); zero-shot timestamps need an audio LM: "
                            f"{list(SUPPORTED_MODEL_TYPES)}, or an openai:URL endpoint")


class LocalAudioLM:
    """A local audio LM answering in batches with greedy decoding (audio first, as the models' chat order)."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 max_new_tokens: int = 256, system_prompt: str = "auto") -> None:
        from framecall.polyaudio.runner import load_generator
        from framecall.prompts import SYSTEM_PROMPTS, resolve_system_prompt

        check_audio_lm(model)
        self.name, self.batch_size, self.max_new_tokens = model, batch_size, max_new_tokens
        self.backbone = load_generator(model, device, dtype)
        self.backbone.eval()
        is_checkpoint = (Path(model) / "manifest.json").is_file() or model.startswith("models:/")
        if system_prompt != "auto":
            self.backbone.system_prompt = resolve_system_prompt(system_prompt)
        elif not is_checkpoint:  # a released model: its family's default system turn
            self.backbone.system_prompt = SYSTEM_PROMPTS[self.backbone.model_type]

    def answer(self, items: list[ZeroShotItem]) -> list[str]:
        out: list[str] = []
        for lo in range(0, len(items), self.batch_size):
            out += self._answer_batch(items[lo : lo + self.batch_size])
        return out

    def _answer_batch(self, items: list[ZeroShotItem]) -> list[str]:
        from framecall.audio.features import log_mel_batch, pad_waveforms

        limit = self.backbone.max_audio_seconds
        waves = [_decode(it) for it in items]
        for it, w in zip(items, waves):
            if limit is not None and w.size / 16_000 > limit:
                raise ZeroShotError(f"{it.source} (id {it.id!r}): {w.size / 16_000:.1f} s of audio, over the "
                                    f"{limit:g} s {self.backbone.model_type} takes")
        samples, lengths = pad_waveforms(waves)
        features, mask = log_mel_batch(samples, lengths, self.backbone.feature_params,
                                       sources=[it.source for it in items])  # [B, M, F], [B, F]
        batch = {"prompts": [zero_shot_prompt(it.task, it.question) for it in items],
                 "features": features, "feature_mask": mask}
        return self.backbone.generate(batch, order="audio_first", max_new_tokens=self.max_new_tokens)


def api_key_from_env(env_name: str | None) -> str | None:
    """The endpoint's key from the variable ``env_name`` ("" / None / "none": send no key)."""
    if not env_name or env_name == "none":
        return None
    key = os.environ.get(env_name)
    if not key:
        raise ZeroShotError(f"api_key_env: the environment variable {env_name!r} is not set or empty "
                            "(export it, or pass api_key_env=none for an endpoint without a key)")
    return key


def chat_url(url: str) -> str:
    """``http://host:port``, ``.../v1`` or the full ``.../v1/chat/completions`` -> the last."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def wav_base64(samples: np.ndarray, sample_rate: int = 16_000) -> str:
    """Mono float32 [N] -> base64 of a 16-bit PCM wav file."""
    import base64

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class ChatEndpoint:
    """An OpenAI-compatible chat endpoint hearing the audio as an ``input_audio`` part."""

    def __init__(self, url: str, api_model: str = "default", api_key_env: str | None = "OPENAI_API_KEY",
                 concurrency: int = 4, timeout_s: float = 120.0, retries: int = 4, max_retry_wait_s: float = 30.0,
                 max_tokens: int = 256) -> None:
        from framecall.tracking import redact

        self._key = api_key_from_env(api_key_env)  # held here only: never logged, printed or put in a name
        self.url, self.name = chat_url(url), redact(f"{API_PREFIX}{url}")
        self.api_model, self.concurrency, self.timeout_s = api_model, concurrency, timeout_s
        self.retries, self.max_retry_wait_s, self.max_tokens = retries, max_retry_wait_s, max_tokens
        self.retried = 0
        """Retries made (429/5xx answers and dropped connections)."""
        self._lock, self._local = threading.Lock(), threading.local()

    def __repr__(self) -> str:
        return f"ChatEndpoint({self.url!r}, model={self.api_model!r})"

    def answer(self, items: list[ZeroShotItem]) -> list[str]:
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            return list(pool.map(self._answer_one, items))
        finally:  # after a failure, the queued requests are dropped, not each sent and waited for
            pool.shutdown(wait=True, cancel_futures=True)

    def _session(self):
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            if self._key:
                self._local.session.headers["Authorization"] = f"Bearer {self._key}"
        return self._local.session

    def _answer_one(self, item: ZeroShotItem) -> str:
        content = [{"type": "input_audio", "input_audio": {"data": wav_base64(_decode(item)), "format": "wav"}},
                   {"type": "text", "text": zero_shot_prompt(item.task, item.question)}]
        body = {"model": self.api_model, "messages": [{"role": "user", "content": content}],
                "temperature": 0.0, "max_tokens": self.max_tokens}
        return _message_text(self._post(body, item), item)

    def _post(self, body: dict[str, Any], item: ZeroShotItem):
        """One request, retried on 429/5xx and dropped connections (the server's Retry-After, else
        exponential backoff, at most ``max_retry_wait_s``); a timeout is not retried: it is named."""
        import requests

        from framecall.client import retry_delay

        where = f"{self.url} (item {item.id!r})"
        for attempt in range(self.retries + 1):
            try:
                response = self._session().post(self.url, json=body, timeout=self.timeout_s)
            except requests.Timeout:
                raise ZeroShotError(f"{where}: no answer within timeout_s={self.timeout_s:g} s") from None
            except requests.ConnectionError as e:
                if attempt == self.retries:
                    raise ZeroShotError(f"{where}: connection failed {attempt + 1} times ({e})") from None
                retry_after = None
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                    raise ZeroShotError(f"{where}: HTTP {response.status_code} after {attempt + 1} attempt(s): "
                                        f"{response.text[:300]}")
                retry_after = response.headers.get("Retry-After")
            with self._lock:
                self.retried += 1
            time.sleep(retry_delay(retry_after, attempt, self.max_retry_wait_s))
        raise AssertionError("unreachable")


def _message_text(response, item: ZeroShotItem) -> str:
    """The answer text of a chat completion; a body without one is logged and answered "" (a parse failure)."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise TypeError(f"content is {type(content).__name__}")
        return content
    except (ValueError, KeyError, IndexError, TypeError) as e:
        log.warning("item %r: the endpoint's answer has no message text (%s); scored as a parse failure", item.id, e)
        return ""


def answer_source(model: str, **options: Any) -> AnswerSource:
    """``openai:URL`` -> :class:`ChatEndpoint`; anything else (path, hub id, preset, checkpoint) -> :class:`LocalAudioLM`.
    ``options``: the keyword arguments of either (those of the other are ignored)."""
    import inspect

    cls: Any = ChatEndpoint if model.startswith(API_PREFIX) else LocalAudioLM
    target = model[len(API_PREFIX):] if cls is ChatEndpoint else model
    if cls is ChatEndpoint and not target.startswith(("http://", "https://")):
        raise ZeroShotError(f"--model {model}: an endpoint is openai:http(s)://host[:port][/v1]")
    accepted = inspect.signature(cls.__init__).parameters
    return cls(target, **{k: v for k, v in options.items() if k in accepted})


# ---------------------------------------------------------------- scoring and the table

OUT_OF_CLIP_MARGIN_S = 1.0
"""A parsed time past the clip's end by more than this (or negative) is not a timestamp of this clip: the
lenient parse reads any number in an answer ("16000 Hz", a year), and one such number would dominate MAD."""


def split_plausible(times: list[float], duration_s: float) -> tuple[list[float], list[float]]:
    """-> (times within [0, duration + OUT_OF_CLIP_MARGIN_S], the others)."""
    inside = [t for t in times if 0.0 <= t <= duration_s + OUT_OF_CLIP_MARGIN_S]
    return inside, [t for t in times if not 0.0 <= t <= duration_s + OUT_OF_CLIP_MARGIN_S]


def score_answers(items: list[ZeroShotItem], texts: list[str], pairing: str = "positional",
                  convention: str = "framecall") -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """-> (one record per item, {task: summary}). A summary has the task's Table 1 accuracies, ``mad_s``,
    ``items``, ``missing``, ``parse_failure_rate`` and ``out_of_clip_rate`` (answers with a time outside
    the clip, :func:`split_plausible`: those times are not scored, and an answer left with none is a
    parse failure); parse failures are misses, never dropped. Each record keeps the raw answer and every
    time it held."""
    records, metrics = [], {}
    failures: dict[str, int] = {}
    outside: dict[str, int] = {}
    for item, text in zip(items, texts, strict=True):
        parsed, status = parse_timestamps(text)
        preds, rejected = split_plausible(parsed, item.duration_s)
        if not preds:
            status = "failed"
        tols = TASK_TOLERANCES_S[item.task]
        m = metrics.setdefault(item.task, TimestampMetrics(tolerances_s=tols, pairing=pairing, convention=convention))
        m.add(preds, item.gold_s, item.duration_s)
        failures[item.task] = failures.get(item.task, 0) + (status == "failed")
        outside[item.task] = outside.get(item.task, 0) + bool(rejected)
        records.append({"id": item.id, "task": item.task, "answer": text, "parse": status, "pred_s": preds,
                        "out_of_clip_s": rejected, "gold_s": item.gold_s})
    summaries = {}
    for task, m in sorted(metrics.items()):
        summaries[task] = {**m.summary(), "parse_failure_rate": failures[task] / len(m.items),
                           "out_of_clip_rate": outside[task] / len(m.items)}
    return records, summaries


def table1(results: dict[str, dict[str, dict[str, float]]], title: str = "") -> str:
    """The paper's Table 1 layout: one row per model; per task its two accuracies (%), MAD (ms) and the
    parse-failure rate (%), which counts answers whose every time lay outside the clip (their share of
    answers with any such time is the summary's ``out_of_clip_rate``). ``results``: model -> task ->
    summary (:func:`score_answers`)."""
    tasks = [t for t in TASK_TOLERANCES_S if any(t in r for r in results.values())]
    header, rule = ["model"], ["---"]
    for task in tasks:
        header += [f"{task} {tolerance_name(t)}" for t in TASK_TOLERANCES_S[task]]
        header += [f"{task} MAD ms", f"{task} parse fail"]
        rule += ["---:"] * 4
    lines = ([f"{title}", ""] if title else []) + ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for model, by_task in results.items():
        cells = [model]
        for task in tasks:
            s = by_task.get(task)
            if s is None:
                cells += ["-"] * 4
                continue
            cells += [_pct(s[tolerance_name(t)]) for t in TASK_TOLERANCES_S[task]]
            cells += [_ms(s["mad_s"]), _pct(s["parse_failure_rate"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    """MAD in ms; a lenient parse can read any number in an answer, so very large ones are written short."""
    if not np.isfinite(seconds):
        return "n/a"
    return f"{seconds * 1000:.0f}" if seconds < 1e3 else f"{seconds * 1000:.1e}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}" if np.isfinite(x) else "n/a"
