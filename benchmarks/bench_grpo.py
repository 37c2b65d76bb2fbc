"""Table 6 in miniature: LoRA SFT only vs SFT + GRPO vs GRPO only, same budget, on the synthetic
PolyAudio bench with the rule judge; single-clip retention (Table 7) before SFT, after SFT and
after GRPO; rollout throughput with 1 vs 2 actors and the GRPO step time by phase.

    python benchmarks/bench_grpo.py --output runs/bench_grpo          # ~15-25 min on 2 cores
    python benchmarks/bench_grpo.py --base tiny-omni-base --output runs/bench_grpo_base   # from the pretrained base
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.config import build_config, to_dict  # noqa: E402
from framecall.data.shards import ShardWriter  # noqa: E402
from framecall.polyaudio.bench import PolyConfig, generate_items  # noqa: E402
from framecall.train.grpo.config import GRPOJobConfig, SFTJobConfig  # noqa: E402

TASKS = ["counting", "comparison", "odd_one_out", "chronological_ordering"]


def make_split(out: Path, split: str, per_task: int, seed: int) -> Path:
    d = out / f"poly_{split}"
    if not (d / "_manifest.json").is_file():
        with ShardWriter(d) as w:
            w.write_all(generate_items(PolyConfig(split=split, per_task=per_task, tasks=TASKS, seed=seed)))
    return d


def throughput(base: str, items: list, actors: int, g: int, repeats: int = 3) -> float:
    """Completions per second through a RolloutPool of ``actors`` actors (after a warm-up call)."""
    import ray

    from framecall.models.checkpoint import LoraSpec
    from framecall.train.grpo.policy import SamplingConfig
    from framecall.train.grpo.pool import RolloutPool
    from framecall.train.grpo.rollout import PolicySpec, RolloutActor

    remote = ray.remote(RolloutActor).options(num_cpus=0.5)
    handles = [remote.remote(PolicySpec(base, to_dict(LoraSpec(r=8, alpha=16)))) for _ in range(actors)]
    pool = RolloutPool(handles)
    from framecall.models.backbone import load_backbone
    from framecall.train.grpo.policy import adapter_state, attach_lora

    bb = load_backbone(base)
    attach_lora(bb, LoraSpec(r=8, alpha=16))
    pool.sync(0, adapter_state(bb))
    sampling = SamplingConfig(max_new_tokens=24)
    pool.generate(items, g, sampling, seed=0)
    t0 = time.perf_counter()
    for r in range(repeats):
        pool.generate(items, g, sampling, seed=r + 1)
    rate = repeats * len(items) * g / (time.perf_counter() - t0)
    for h in handles:
        ray.kill(h)
    return rate


def bench_scores(model: str, bench: Path) -> dict:
    from framecall.polyaudio.runner import run_bench

    report = run_bench(model, bench, actors=1, batch_size=8, max_new_tokens=24)
    fmt = sum("<answer>" in r["response"] and "</answer>" in r["response"] for r in report["records"])
    return {"means": report["per_task"]["rule"]["means"], "format_rate": fmt / max(1, report["items"])}


def retention_scores(model: str) -> dict:
    from framecall.polyaudio.runner import load_generator
    from framecall.train.grpo.retention import evaluate_retention, retention_items

    return evaluate_retention(load_generator(model), retention_items(num=40, seed=11))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/bench_grpo")
    p.add_argument("--sft-steps", type=int, default=60)
    p.add_argument("--grpo-steps", type=int, default=20)
    p.add_argument("--per-task", type=int, default=64)
    p.add_argument("--bench-per-task", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base", default="tiny-omni", help="backbone SFT adapts and GRPO-only starts from (a preset)")
    args = p.parse_args()
    out = Path(args.output).resolve()
    train, pref = make_split(out, "train", args.per_task, args.seed), make_split(out, "preference", args.per_task, args.seed)
    bench = make_split(out, "bench", args.bench_per_task, args.seed)
    from framecall.runtime import init_ray
    from framecall.train.grpo.runner import fit_grpo, fit_sft

    init_ray(None, num_cpus=6)
    common = [f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}", "ray.num_workers=1", "data.make_if_missing=false"]
    t0 = time.time()
    sft = fit_sft(build_config(SFTJobConfig, overrides=[
        f"output={out / 'sft'}", f"base={args.base}", f"data.data_dir={train}", f"train.max_steps={args.sft_steps}",
        f"train.save_every={args.sft_steps}", f"train.seed={args.seed}", *common]))
    walls = {"sft": time.time() - t0}
    runs = {}
    for name, policy in (("sft_grpo", sft.best_checkpoint), ("grpo_only", args.base)):
        t0 = time.time()
        runs[name] = fit_grpo(build_config(GRPOJobConfig, overrides=[
            f"output={out / name}", f"policy={policy}", f"data.data_dir={pref}", f"grpo.max_steps={args.grpo_steps}",
            f"grpo.save_every={args.grpo_steps}", f"grpo.seed={args.seed}", "rollout.num_actors=2", *common]))
        walls[name] = time.time() - t0
    models = {"base": args.base, "sft": str(sft.best_checkpoint),
              "sft_grpo": str(runs["sft_grpo"].best_checkpoint), "grpo_only": str(runs["grpo_only"].best_checkpoint)}
    scores = {name: bench_scores(m, bench) for name, m in models.items()}
    retention = {name: retention_scores(m) for name, m in models.items()}
    from framecall.train.grpo.data import row_to_item

    items = [row_to_item(r) for r in generate_items(PolyConfig(split="bench", per_task=1, tasks=TASKS))]
    rates = {n: throughput(args.base, items, n, 4) for n in (1, 2)}
    phases = phase_split(runs["sft_grpo"])
    result = {"args": vars(args), "walls_s": walls, "scores": scores, "retention": retention,
              "completions_per_s": rates, "phases_s": phases}
    (out / "bench_grpo.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def phase_split(run) -> dict:
    """Mean seconds per GRPO phase over the run (from its MLflow metric history)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(run.tracking_uri)
    out = {}
    for key in client.get_run(run.run_id).data.metrics:
        if key.startswith("time/"):
            hist = client.get_metric_history(run.run_id, key)
            out[key] = sum(m.value for m in hist) / len(hist)
    return out


if __name__ == "__main__":
    main()
