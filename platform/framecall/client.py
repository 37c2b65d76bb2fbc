"""Python client and command line for the framecall Serve API.

    framecall localize talk.wav "When does the 1st occurrence of the word 'much' occur?"
    framecall localize a.wav b.wav c.wav -q "When does the 2nd speaker start speaking?" --output out/
    framecall align talk.wav "the cat sat on the mat" --format textgrid > talk.TextGrid
    framecall align --pairs pairs.tsv --format ctm --output out/     # audio<TAB>transcript per line
    framecall predict --checkpoint CKPT --input recordings/ --output out/   # in-process (jobs/predict.py)
    framecall export-adapter --checkpoint CKPT --output adapter/   # a LoRA frame model in peft's layout

``--url`` (default ``$FRAMECALL_URL`` or http://127.0.0.1:8000) and ``--api-key`` (default
``$FRAMECALL_API_KEY``). Many files get a progress bar; a failed file is reported with the
server's error and the run exits non-zero after the others finish. A 503 (overload, a model
replica restarting) is retried after the server's Retry-After, at most ``retries`` times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:8000"


class FramecallError(RuntimeError):
    """An error answer of the server: HTTP status, the field it names, its message."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"HTTP {status} [{field}]: {message}")
        self.status, self.field, self.message = status, field, message


class FramecallClient:
    """``retries``: how many times a 503 is retried (after its Retry-After, at most ``max_retry_wait_s``);
    ``retried`` counts the retries this client made."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 300.0,
                 retries: int = 5, max_retry_wait_s: float = 30.0) -> None:
        self.url = (url or os.environ.get("FRAMECALL_URL") or DEFAULT_URL).rstrip("/")
        self.session = requests.Session()
        key = api_key if api_key is not None else os.environ.get("FRAMECALL_API_KEY")
        if key:
            self.session.headers["X-API-Key"] = key
        self.timeout = timeout
        self.retries, self.max_retry_wait_s = retries, max_retry_wait_s
        self.retried = 0
        self._lock = threading.Lock()

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request, retried on 503 (the only status that says "try again"), then checked."""
        for attempt in range(self.retries + 1):
            response = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
            if response.status_code != 503 or attempt == self.retries:
                return self._check(response)
            with self._lock:
                self.retried += 1
            time.sleep(retry_delay(response.headers.get("Retry-After"), attempt, self.max_retry_wait_s))
        raise AssertionError("unreachable")

    def _check(self, response: requests.Response) -> requests.Response:
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                raise FramecallError(response.status_code, err.get("field", "?"), err.get("message", ""))
            except (ValueError, KeyError, TypeError):
                raise FramecallError(response.status_code, "?", response.text[:500]) from None
        return response

    def health(self) -> dict[str, Any]:
        return self._send("GET", "/healthz").json()

    def localize(self, audio: str | Path | bytes, questions: list[str | dict[str, Any]],
                 return_curve: bool = False) -> dict[str, Any]:
        """Timestamps for each question; a question is a string or {"question", "num_events", "task"}."""
        qs = [{"question": q} if isinstance(q, str) else dict(q) for q in questions]
        data = {"questions": json.dumps(qs), "return_curve": str(return_curve).lower()}
        return self._send("POST", "/v1/localize", files={"audio": _upload(audio)}, data=data).json()

    def align(self, audio: str | Path | bytes, transcript: str, format: str = "json") -> dict[str, Any] | str:
        """Word starts and ends: a dict for json, the file text for textgrid / ctm / srt / vtt."""
        r = self._send("POST", "/v1/align", files={"audio": _upload(audio)},
                       data={"transcript": transcript, "format": format})
        return r.json() if format == "json" else r.text


def retry_delay(retry_after: str | None, attempt: int, cap_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's Retry-After (seconds) when
    it sends one, else exponential backoff from 0.5 s; never more than ``cap_s``."""
    try:
        delay = float(retry_after) if retry_after is not None else 0.5 * 2 ** attempt
    except ValueError:  # an HTTP date: not worth parsing for a retry hint
        delay = 0.5 * 2 ** attempt
    if not math.isfinite(delay):
        delay = 0.5 * 2 ** attempt
    return min(max(delay, 0.0), cap_s)


def _upload(audio: str | Path | bytes) -> tuple[str, bytes, str]:
    if isinstance(audio, (bytes, bytearray)):
        return "audio", bytes(audio), "application/octet-stream"
    path = Path(audio)
    return path.name, path.read_bytes(), "application/octet-stream"


def _progress(items: list, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", disable=len(items) < 2, file=sys.stderr)


def _write(output: str | None, name: str, text: str) -> None:
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    Path(output).mkdir(parents=True, exist_ok=True)
    (Path(output) / name).write_text(text)


def run_predict(argv: list[str]) -> int:
    """``framecall predict ...``: jobs/predict.py's command line, in this process (no server)."""
    from framecall import predict_cli

    return predict_cli.cli(argv, predict_cli.HELP, prog="framecall predict")


def run_export_adapter(argv: list[str]) -> int:
    """``framecall export-adapter``: a LoRA frame checkpoint's adapter in peft's layout."""
    p = argparse.ArgumentParser(prog="framecall export-adapter",
                                description="Write a finetune=lora frame checkpoint's LoRA as a peft adapter "
                                            "(adapter_config.json + adapter_model.safetensors) and its head.")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or models:/name/version")
    p.add_argument("--output", required=True, help="new directory (must not exist or be empty)")
    args = p.parse_args(argv)
    from framecall.models.adapters import export_frame_adapter
    from framecall.models.checkpoint import CheckpointError

    try:
        print(f"peft adapter: {export_frame_adapter(args.checkpoint, args.output)}")
    except (CheckpointError, FileExistsError) as e:
        print(f"export-adapter: {e}", file=sys.stderr)
        return 2
    return 0


LOCAL_COMMANDS = {"predict": run_predict, "export-adapter": run_export_adapter}
"""Subcommands that run in this process and take their own flags (no --url / --api-key)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in LOCAL_COMMANDS:
        return LOCAL_COMMANDS[argv[0]](argv[1:])
    p = argparse.ArgumentParser(prog="framecall", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help=f"server (default $FRAMECALL_URL or {DEFAULT_URL})")
    p.add_argument("--api-key", help="X-API-Key (default $FRAMECALL_API_KEY)")
    sub = p.add_subparsers(dest="command", required=True)
    loc = sub.add_parser("localize", help="timestamps for questions about audio files")
    loc.add_argument("inputs", nargs="+", help="AUDIO... [QUESTION] (the question last when -q is not used)")
    loc.add_argument("-q", "--question", action="append", help="a question (repeatable)")
    loc.add_argument("-n", "--num-events", type=int, help="events per question (default: estimated)")
    loc.add_argument("--curve", action="store_true", help="include the per-frame curve")
    loc.add_argument("--output", help="directory for one AUDIO_STEM.json per file (default: JSON lines on stdout)")
    al = sub.add_parser("align", help="word start/end times from audio + transcript")
    al.add_argument("audio", nargs="?")
    al.add_argument("transcript", nargs="?")
    al.add_argument("--pairs", help="TSV file: audio path <TAB> transcript, one pair per line")
    al.add_argument("--format", default="json", choices=["json", "textgrid", "ctm", "srt", "vtt"])
    al.add_argument("--output", help="directory for one file per audio (default: stdout)")
    sub.add_parser("predict", help="batch prediction in this process: framecall predict --help")
    sub.add_parser("export-adapter", help="a LoRA frame checkpoint as a peft adapter: framecall export-adapter --help")
    args = p.parse_args(argv)
    if args.command in LOCAL_COMMANDS:  # reached only with --url/--api-key before it
        p.error(f"{args.command} runs in this process, not against a server: framecall {args.command} ...")
    client = FramecallClient(args.url, args.api_key)
    failures = 0
    if args.command == "localize":
        files, questions = list(args.inputs), list(args.question or [])
        if not questions:
            if len(files) < 2:
                p.error("localize needs AUDIO and a QUESTION (last argument, or -q)")
            questions = [files.pop()]
        qs = [{"question": q, **({"num_events": args.num_events} if args.num_events else {})} for q in questions]
        for f in _progress(files, "localize"):
            try:
                out = {"audio": f, **client.localize(f, qs, return_curve=args.curve)}
            except (FramecallError, OSError) as e:
                failures += 1
                print(f"{f}: {e}", file=sys.stderr)
                continue
            _write(args.output, Path(f).stem + ".json", json.dumps(out) if args.output is None
                   else json.dumps(out, indent=2))
    else:
        if args.pairs:
            pairs = [line.rstrip("\n").split("\t", 1) for line in Path(args.pairs).read_text().splitlines() if line]
        elif args.audio and args.transcript:
            pairs = [[args.audio, args.transcript]]
        else:
            p.error("align needs AUDIO TRANSCRIPT, or --pairs FILE")
        suffix = {"json": ".json", "textgrid": ".TextGrid", "ctm": ".ctm", "srt": ".srt", "vtt": ".vtt"}[args.format]
        for audio, transcript in _progress(pairs, "align"):
            try:
                out = client.align(audio, transcript, args.format)
            except (FramecallError, OSError) as e:
                failures += 1
                print(f"{audio}: {e}", file=sys.stderr)
                continue
            _write(args.output, Path(audio).stem + suffix, json.dumps(out) if isinstance(out, dict) else out)
    if failures:
        print(f"{failures} file(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
