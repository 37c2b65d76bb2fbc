"""Run the PolyAudio benchmark: batched generation (Ray Data actor pool), judges, per-task table, MLflow.

    python jobs/eval_polyaudio.py --model tiny-qwen2-audio --bench runs/data/polyaudio_bench
    python jobs/eval_polyaudio.py --model runs/sft/best --baseline qwen2audio=/ckpt/Qwen2-Audio-7B-Instruct \
        --bench DIR --judge rule,llm --judge-url http://127.0.0.1:8000 --actors 2
    python jobs/eval_polyaudio.py --model /ckpt/single-audio-model --single-audio --bench DIR   # clips concatenated
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.polyaudio.judges import LLMJudge, RuleJudge  # noqa: E402
from framecall.polyaudio.runner import log_report, run_bench, table  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="model", required=True,
                   help="framecall checkpoint, models:/ URI, tiny preset or HF checkpoint")
    p.add_argument("--baseline", action="append", default=[], help="NAME=MODEL, run the same way (repeatable)")
    p.add_argument("--bench", required=True, help="PolyAudio shard directory (jobs/make_polyaudio.py)")
    p.add_argument("--judge", default="rule", help="rule and/or llm, comma separated (the first is the table's)")
    p.add_argument("--judge-url", help="OpenAI-compatible server for the llm judge")
    p.add_argument("--judge-model", default="judge")
    p.add_argument("--judge-guided", action="store_true", help="send guided_choice (vLLM / framecall judge server)")
    p.add_argument("--single-audio", action="store_true", help="clips concatenated with 2 s silence (seed protocol)")
    p.add_argument("--actors", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--limit", type=int, help="first N items only")
    p.add_argument("--output", default="runs/eval_polyaudio")
    p.add_argument("--mlflow-uri", help="default: sqlite in --output")
    args = p.parse_args(argv)
    judges = []
    for name in args.judge.split(","):
        if name == "rule":
            judges.append(RuleJudge())
        elif name == "llm":
            if not args.judge_url:
                p.error("--judge llm needs --judge-url")
            judges.append(LLMJudge(args.judge_url, args.judge_model, guided=args.judge_guided))
        else:
            p.error(f"unknown judge {name!r}; valid: rule, llm")
    from framecall.runtime import init_ray

    init_ray()
    models = {"model": args.model, **dict(b.split("=", 1) for b in args.baseline)}
    reports = {name: run_bench(m, args.bench, judges, args.actors, args.batch_size, args.max_new_tokens,
                               args.single_audio, args.limit) for name, m in models.items()}
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(f"judge: {j.name}\n\n{table(reports, j.name)}" for j in judges)
    for name, rep in reports.items():
        text += f"\n\n{name}: {rep['items']} items, {rep['items_per_s']:.2f} items/s"
        if "agreement" in rep:
            text += f"; judge agreement {json.dumps(rep['agreement'])}"
    (out / "table.md").write_text(text + "\n")
    run_id = log_report(args.mlflow_uri or f"sqlite:///{out / 'mlflow.db'}", reports, out)
    print(text)
    print(f"MLflow run {run_id}")
    return reports


if __name__ == "__main__":
    main()
