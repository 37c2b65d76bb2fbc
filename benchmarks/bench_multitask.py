"""One model trained on a weighted task mixture vs. one model per task, same step budget.

Makes the synthetic corpora if missing (words, speakers, events; ``--num`` items each),
trains a Poisson frame model on each task alone and one on the equal-weight mixture, all
with the same number of steps, and writes the per-task test tables (topn_nms decoder).

    python benchmarks/bench_multitask.py --steps 800 --num 2000 --output runs/bench_multitask
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("words", "speakers", "events")


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--output", default="runs/bench_multitask")
    p.add_argument("--decoder", default="topn_nms")
    args = p.parse_args()
    out = (ROOT / args.output).resolve()
    data = {t: out / "data" / t for t in TASKS}
    for task, d in data.items():
        if not (d / "_manifest.json").is_file():
            run([sys.executable, "jobs/make_data.py", "--task", task, "--num", str(args.num), "--output", str(d),
                 "--max-seconds", "6"])
    common = [f"train.max_steps={args.steps}", "train.eval_every=200", "eval.figures=0", "data.make_if_missing=false",
              f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}", "mlflow.experiment=bench_multitask"]
    walls, results = {}, {}
    runs = {t: [f"data.data_dir={d}"] for t, d in data.items()}
    runs["mixture"] = ["data.mixture={" + ", ".join(f"{d}: 1.0" for d in data.values()) + "}"]
    for name, extra in runs.items():
        if (out / name / "test_metrics.json").is_file():  # finished earlier: reuse
            results[name] = json.loads((out / name / "test_metrics.json").read_text())[args.decoder]
            walls[name] = json.loads((out / name / "wall.json").read_text())["wall_s"]
            continue
        t0 = time.time()
        run([sys.executable, "jobs/train_poisson.py", "--output", str(out / name), *common, *extra,
             f"mlflow.run_name={name}", f"mlflow.registered_model_name=bench-multitask-{name}"])
        walls[name] = time.time() - t0
        (out / name / "wall.json").write_text(json.dumps({"wall_s": walls[name]}))
        results[name] = json.loads((out / name / "test_metrics.json").read_text())[args.decoder]
    cols = ("acc@20ms", "acc@40ms", "acc@100ms", "mad_s")
    lines = [f"| task | model | {' | '.join(cols)} |", "|---|---|" + "---|" * len(cols)]
    for task in TASKS:
        for name in (task, "mixture"):
            s = results[name][task]
            cells = [f"{100 * s[c]:.1f}" if c.startswith("acc") else f"{1000 * s[c]:.0f} ms" for c in cols]
            lines.append(f"| {task} | {'single-task' if name == task else 'mixture'} | {' | '.join(cells)} |")
    table = "\n".join(lines)
    summary = f"{table}\n\nwall time per run (s): " + ", ".join(f"{k} {v:.0f}" for k, v in walls.items())
    (out / "table.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
