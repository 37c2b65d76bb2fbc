"""The command line of ``jobs/evaluate_zero_shot.py``: typed config, flags, one Table 1 row per model."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framecall.bench.zero_shot import answer_source, load_items, score_answers, table1
from framecall.config import ConfigError, add_config_args, config_from_args, save_resolved
from framecall.metrics import check_pairing


@dataclass
class ZeroShotConfig:
    """What jobs/evaluate_zero_shot.py reads (each flag sets the key of the same name)."""

    models: list[str] = field(default_factory=list)
    """Each a table row: a tiny preset, a local HF checkpoint, a hub id, a framecall checkpoint, or
    ``openai:URL`` (an OpenAI-compatible chat endpoint). --model, repeatable."""
    data: list[str] = field(default_factory=list)
    """Shard directories (jobs/make_data.py); words / words_all / speakers / events rows. --data, repeatable."""
    split: str | None = None
    """Only rows of this split (None: every row; a zero-shot model has seen none of them)."""
    limit: int | None = None
    """First N rows per data directory."""
    batch_size: int = 8
    """Local models: items per generate call."""
    max_new_tokens: int = 256
    """Longest answer (local models: new tokens; endpoints: max_tokens)."""
    device: str = "auto"
    """Local models: auto (CUDA if present, else cpu) | cpu | cuda | cuda:N."""
    dtype: str = "auto"
    """Local models: auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16."""
    system_prompt: str = "auto"
    """Local models: auto (a released model's family default; a framecall checkpoint's own) | none | a
    name in prompts.SYSTEM_PROMPTS | the text."""
    api_model: str = "default"
    """Endpoints: the request's ``model`` field (e.g. gpt-4o-audio-preview)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Endpoints: the environment variable holding the API key (sent as a Bearer token; "none": no key).
    The key itself is never in a config, a flag, a log or an output file."""
    concurrency: int = 4
    """Endpoints: requests in flight at once."""
    timeout_s: float = 120.0
    """Endpoints: seconds to wait for one answer (not retried: it is named in the error)."""
    retries: int = 4
    """Endpoints: retries of a 429/5xx answer or a dropped connection."""
    max_retry_wait_s: float = 30.0
    """Endpoints: longest wait before a retry (Retry-After, else 0.5 s doubling)."""
    pairing: str = "positional"
    convention: str = "framecall"
    """framecall | paper (see framecall.metrics)."""
    output: str = "runs/zero_shot"

    def __post_init__(self) -> None:
        missing = [k for k in ("models", "data") if not getattr(self, k)]
        if missing:
            raise ConfigError(f"missing {missing}: give --{missing[0].rstrip('s')} (or {missing[0]}: in --config)")
        for name in ("batch_size", "max_new_tokens", "concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.timeout_s > 0 or self.retries < 0:
            raise ConfigError(f"timeout_s must be > 0 and retries >= 0, got {self.timeout_s}, {self.retries}")
        check_pairing(self.pairing, self.convention)


def parse_args(argv, doc: str | None = None) -> ZeroShotConfig | None:
    """-> the resolved config (None after --print-config); a bad flag or key exits with 2."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", dest="models",
                   help="tiny preset, HF checkpoint path, hub id, framecall checkpoint or openai:URL (repeatable)")
    p.add_argument("--data", action="append", help="shard directory (repeatable)")
    for flag, kind in (("--split", str), ("--limit", int), ("--batch-size", int), ("--max-new-tokens", int),
                       ("--device", str), ("--dtype", str), ("--system-prompt", str), ("--api-model", str),
                       ("--api-key-env", str), ("--concurrency", int), ("--timeout-s", float), ("--retries", int),
                       ("--pairing", str), ("--convention", str), ("--output", str)):
        p.add_argument(flag, type=kind)
    add_config_args(p)
    args = p.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "print_config", "overrides")}
    return config_from_args(p, args, ZeroShotConfig, flags)


def run(cfg: ZeroShotConfig) -> dict[str, Any]:
    """Answer and score every item with every model; write table1.md, scores.json, answers_<i>.jsonl."""
    items = load_items(cfg.data, cfg.split, cfg.limit)
    options = dict(device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                   system_prompt=cfg.system_prompt, api_model=cfg.api_model, api_key_env=cfg.api_key_env,
                   concurrency=cfg.concurrency, timeout_s=cfg.timeout_s, retries=cfg.retries,
                   max_retry_wait_s=cfg.max_retry_wait_s, max_tokens=cfg.max_new_tokens)
    out = Path(cfg.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    results, report = {}, {"items": len(items), "models": {}}
    for i, model in enumerate(cfg.models):
        source = answer_source(model, **options)
        records, summaries = score_answers(items, source.answer(items), cfg.pairing, cfg.convention)
        results[source.name] = summaries
        report["models"][source.name] = {"scores": summaries, "retried": getattr(source, "retried", 0)}
        (out / f"answers_{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    title = (f"Table 1: zero-shot timestamps ({len(items)} items; pairing {cfg.pairing}, "
             f"convention {cfg.convention}; accuracies and parse failures in %)")
    report["table"] = table1(results, title)
    (out / "table1.md").write_text(report["table"] + "\n")
    (out / "scores.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv=None, doc: str | None = None) -> dict[str, Any]:
    cfg = parse_args(argv, doc)
    if cfg is None:
        return {}
    report = run(cfg)
    print(report["table"])
    return report
