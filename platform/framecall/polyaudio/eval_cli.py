"""The command line of ``jobs/eval_polyaudio.py``: typed config, flags, runs of
:func:`framecall.polyaudio.runner.run_bench`, the table and the MLflow run."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from framecall.config import ConfigError, add_config_args, build_config, to_yaml
from framecall.polyaudio.judges import LLMJudge, RuleJudge
from framecall.polyaudio.runner import log_report, run_bench, table

JUDGES = ("rule", "llm")


@dataclass
class EvalPolyAudioConfig:
    """What jobs/eval_polyaudio.py reads (each flag sets the key of the same name)."""

    model: str = ""
    """Framecall checkpoint, models:/ URI, tiny preset or HF checkpoint (required)."""
    bench: str = ""
    """PolyAudio shard directory, from jobs/make_polyaudio.py (required)."""
    baselines: dict[str, str] = field(default_factory=dict)
    """Name -> model, run the same way (--baseline NAME=MODEL, repeatable)."""
    judges: list[str] = field(default_factory=lambda: ["rule"])
    """rule and/or llm (the first is the table's)."""
    judge_url: str | None = None
    """OpenAI-compatible server of the llm judge."""
    judge_model: str = "judge"
    judge_api_key_env: str | None = None
    """Name of the environment variable holding the llm judge endpoint's API key (sent as a Bearer token);
    the key itself never sits in a config, a flag or the MLflow run."""
    judge_guided: bool = False
    """Send guided_choice (vLLM / framecall judge server)."""
    single_audio: bool = False
    """Clips concatenated with 2 s silence (seed protocol)."""
    actors: int = 1
    gpus_per_actor: float = 0.0
    """GPUs each generating actor holds (fractions below 1 share a GPU); 0 on CPU clusters."""
    device: str = "auto"
    """auto (the actor's GPU when gpus_per_actor > 0, else cpu) | cpu | cuda | cuda:N."""
    dtype: str = "auto"
    """auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16."""
    batch_size: int = 4
    max_new_tokens: int = 64
    limit: int | None = None
    """First N items only."""
    output: str = "runs/eval_polyaudio"
    mlflow_uri: str | None = None
    """Default: sqlite in ``output``."""

    def __post_init__(self) -> None:
        missing = [k for k in ("model", "bench") if not getattr(self, k)]
        if missing:
            raise ConfigError(f"missing {missing}: give --{missing[0]} (or {missing[0]}: in --config)")
        unknown = [j for j in self.judges if j not in JUDGES]
        if unknown or not self.judges:
            raise ConfigError(f"judges: unknown judge(s) {unknown}; valid: {list(JUDGES)}")
        if "llm" in self.judges and not self.judge_url:
            raise ConfigError("judges: llm needs --judge-url (judge_url)")
        from framecall.runtime import check_resources

        check_resources("gpus_per_actor", 1, self.gpus_per_actor)


def parse_args(argv, doc: str | None = None) -> tuple[EvalPolyAudioConfig, bool]:
    """-> (the resolved config, whether --print-config was given); a bad flag or key exits with 2."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="model",
                   help="framecall checkpoint, models:/ URI, tiny preset or HF checkpoint")
    p.add_argument("--baseline", action="append", default=[], help="NAME=MODEL, run the same way (repeatable)")
    p.add_argument("--bench", help="PolyAudio shard directory (jobs/make_polyaudio.py)")
    p.add_argument("--judge", help="rule and/or llm, comma separated (the first is the table's)")
    p.add_argument("--judge-url", help="OpenAI-compatible server for the llm judge")
    p.add_argument("--judge-model")
    p.add_argument("--judge-guided", action="store_true", default=None,
                   help="send guided_choice (vLLM / framecall judge server)")
    p.add_argument("--single-audio", action="store_true", default=None,
                   help="clips concatenated with 2 s silence (seed protocol)")
    p.add_argument("--actors", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--limit", type=int, help="first N items only")
    p.add_argument("--output")
    p.add_argument("--mlflow-uri", help="default: sqlite in --output")
    add_config_args(p)
    args = p.parse_args(argv)
    bad = [b for b in args.baseline if "=" not in b]
    if bad:
        p.error(f"--baseline {bad[0]!r} must look like NAME=MODEL")
    flags = {k: getattr(args, k) for k in ("model", "bench", "judge_url", "judge_model", "judge_guided",
                                           "single_audio", "actors", "batch_size", "max_new_tokens", "limit",
                                           "output", "mlflow_uri")}
    flags["judges"] = args.judge.split(",") if args.judge else None
    flags["baselines"] = dict(b.split("=", 1) for b in args.baseline) or None
    try:
        return build_config(EvalPolyAudioConfig, args.config, flags, args.overrides), args.print_config
    except (ConfigError, ValueError) as e:
        p.error(str(e))
    raise AssertionError("unreachable")


def judge_api_key(env_name: str | None) -> str | None:
    """The llm judge's API key from the environment variable named ``env_name`` (None: no key)."""
    import os

    if env_name is None:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise ConfigError(f"judge_api_key_env: the environment variable {env_name!r} is not set or empty")
    return key


def main(argv=None, doc: str | None = None) -> dict:
    """Run the bench for the model and each baseline; -> reports by name ({} after --print-config)."""
    cfg, print_only = parse_args(argv, doc)
    if print_only:
        print(to_yaml(cfg), end="")
        return {}
    judges = [RuleJudge() if name == "rule" else LLMJudge(cfg.judge_url, cfg.judge_model, guided=cfg.judge_guided,
                                                         api_key=judge_api_key(cfg.judge_api_key_env))
              for name in cfg.judges]
    from framecall.runtime import init_ray

    init_ray()
    models = {"model": cfg.model, **cfg.baselines}
    reports = {name: run_bench(m, cfg.bench, judges, cfg.actors, cfg.batch_size, cfg.max_new_tokens,
                               cfg.single_audio, cfg.limit, cfg.gpus_per_actor, cfg.device, cfg.dtype)
               for name, m in models.items()}
    out = Path(cfg.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(f"judge: {j.name}\n\n{table(reports, j.name)}" for j in judges)
    for name, rep in reports.items():
        text += f"\n\n{name}: {rep['items']} items, {rep['items_per_s']:.2f} items/s"
        if "agreement" in rep:
            text += f"; judge agreement {json.dumps(rep['agreement'])}"
    (out / "table.md").write_text(text + "\n")
    run_id = log_report(cfg.mlflow_uri or f"sqlite:///{out / 'mlflow.db'}", reports, out)
    print(text)
    print(f"MLflow run {run_id}")
    return reports
