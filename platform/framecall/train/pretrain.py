"""A pretrained tiny base (issue #21 item 1): the tiny backbone trained on a multi-task synthetic mixture.

Every model here used to start from random weights; the paper fine-tunes a pretrained audio LM. A base
that has already heard words, speakers and events at every position of 1-15 s clips does not have to
learn *where answers are allowed* from its fine-tuning data. :func:`build_base`

1. makes one synthetic shard directory per (task, duration range) (``ensure_synthetic``, reused when
   its generator parameters match),
2. saves a randomly initialised tiny backbone of the configured width/depth (``build_tiny``),
3. trains it with one Poisson frame head on the weighted mixture (``runner.fit``: Ray Train, MLflow,
   evaluation per task on each test split),
4. exports the best checkpoint standalone (``backbone/`` is a plain Hugging Face checkpoint) and marks
   its manifest ``stage: base`` with the data, steps, seed, config and test metrics, plus ``SHA256SUMS``.

The presets ``tiny-omni-base`` / ``tiny-qwen2-audio-base`` (:func:`framecall.models.tiny.ensure_base`)
load ``backbone/`` through ``from_pretrained``; only the backbone is reused (each run gets a new head).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from framecall.models.tiny import BASE_PRESETS, SUMS_FILE, register_base_builder

BASE_ARCHS = ("tiny-omni", "tiny-qwen2-audio")
BASE_TASKS = ("words", "words_all", "speakers", "events")
TABLE_FILE = "eval_table.md"


@dataclass
class PretrainConfig:
    """What ``jobs/pretrain_base.py`` builds. YAML keys mirror the fields."""

    arch: str = "tiny-omni"
    """The architecture of the tiny backbone: tiny-omni | tiny-qwen2-audio."""
    hidden: int = 128
    """Decoder width (the tiny presets' 128)."""
    layers: int = 3
    """Decoder layers (the tiny presets' 3)."""
    heads: int = 4
    """Attention heads (hidden must divide by it)."""
    seed: int = 0
    """Seeds the initial weights, the data and training."""
    tasks: list[str] = field(default_factory=lambda: list(BASE_TASKS))
    """Synthetic frame tasks in the mixture (framecall.data.synthetic.TASKS), equal weights."""
    durations: list[list[float]] = field(default_factory=lambda: [[1.0, 8.0], [8.0, 15.0]])
    """Clip-length ranges [min_s, max_s]; each task gets one shard directory per range, so long clips
    are as frequent as short ones. Questions are asked about every position (no answer window)."""
    num_per_source: int = 600
    """Items per (task, range) directory."""
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.88, "val": 0.04, "test": 0.08})
    """Split fractions of every directory (each item's split is drawn; train, val and test must all get rows)."""
    data_root: str = ""
    """Where the shard directories go ("" = <output>/data); existing matching ones are reused."""
    output: str = "runs/pretrain_base"
    """Run directory: data/, init/ (the random start), run/ (Ray Train, MLflow), base/ (the result)."""
    max_steps: int = 3000
    batch_size: int = 8
    """Per worker."""
    lr: float = 1e-3
    warmup_steps: int = 100
    eval_every: int = 500
    num_workers: int = 2
    train_overrides: list[str] = field(default_factory=list)
    """Further dotted TrainJobConfig overrides (``train.grad_clip=0.5``, ``ray.cpus_per_worker=0.5``)."""

    def __post_init__(self) -> None:
        from framecall.data.synthetic import TASKS

        if self.arch not in BASE_ARCHS:
            raise ValueError(f"arch must be one of {list(BASE_ARCHS)}, got {self.arch!r}")
        if self.hidden <= 0 or self.layers <= 0 or self.heads <= 0 or self.hidden % self.heads:
            raise ValueError(f"hidden/layers/heads must be positive with hidden % heads == 0, "
                             f"got {self.hidden}/{self.layers}/{self.heads}")
        bad = [t for t in self.tasks if t not in TASKS]
        if not self.tasks or bad:
            raise ValueError(f"tasks {bad or self.tasks!r} must name at least one of {list(TASKS)}")
        for r in self.durations:
            if len(r) != 2 or not 0 < r[0] <= r[1]:
                raise ValueError(f"durations: each range must be [min_s, max_s] with 0 < min_s <= max_s, got {r}")
        if not self.durations:
            raise ValueError("durations must hold at least one [min_s, max_s] range")
        if self.num_per_source < 20:
            raise ValueError(f"num_per_source must be >= 20 (every split needs items), got {self.num_per_source}")


@dataclass
class BaseResult:
    base_dir: Path
    """The base checkpoint: manifest.json, model.safetensors (the pretraining head), backbone/, SHA256SUMS."""
    table: str
    """Its evaluation table per task on the test splits."""
    wall_s: float
    registered_model: str | None = None


def source_name(task: str, lo: float, hi: float) -> str:
    return f"{task}_{lo:g}-{hi:g}s"


def make_base_data(cfg: PretrainConfig) -> dict[Path, dict[str, Any]]:
    """One shard directory per (task, duration range): -> directory -> what it holds (task, seconds, rows)."""
    from framecall.data.synthetic import SynthConfig, ensure_synthetic

    root = Path(cfg.data_root or Path(cfg.output) / "data").resolve()
    sources: dict[Path, dict[str, Any]] = {}
    for i, task in enumerate(cfg.tasks):
        for j, (lo, hi) in enumerate(cfg.durations):
            synth = SynthConfig(task=task, num=cfg.num_per_source, seed=cfg.seed * 1000 + 10 * i + j,
                                min_seconds=lo, max_seconds=hi, splits=dict(cfg.splits))
            path = ensure_synthetic(root / source_name(task, lo, hi), synth, make_if_missing=True)
            sources[path] = {"task": task, "seconds": [lo, hi], "rows": cfg.num_per_source, "seed": synth.seed}
    return sources


def save_initial_backbone(cfg: PretrainConfig, target: Path) -> Path:
    """The random start: ``build_tiny`` at the configured size, saved like a tiny preset (reused if present)."""
    from framecall.models.tiny import build_tiny
    from framecall.models.tokenizer import build_tokenizer

    if (target / "config.json").is_file():
        return target
    tokenizer = build_tokenizer()
    model = build_tiny(cfg.arch, tokenizer, hidden=cfg.hidden, layers=cfg.layers, heads=cfg.heads, seed=cfg.seed)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


def train_config(cfg: PretrainConfig, sources: dict[Path, dict[str, Any]], init_dir: Path):
    """The frame-head training run of the base: a Poisson head over the equal-weight mixture."""
    from framecall.config import build_config
    from framecall.train.config import TrainJobConfig

    tree = {
        "output": str(Path(cfg.output).resolve() / "run"),
        "data": {"mixture": {str(d): 1.0 for d in sources}, "extra_test_splits": [], "make_if_missing": False},
        "model": {"name": str(init_dir)},
        "train": {"objective": "frame", "loss": "poisson", "max_steps": cfg.max_steps, "batch_size": cfg.batch_size,
                  "lr": cfg.lr, "warmup_steps": cfg.warmup_steps, "eval_every": cfg.eval_every, "seed": cfg.seed,
                  "select_metric": "acc@40ms"},
        "ray": {"num_workers": cfg.num_workers},
        "mlflow": {"registered_model_name": f"framecall-base-{cfg.arch}"},
    }
    return build_config(TrainJobConfig, overrides=cfg.train_overrides, base=tree)


def per_task_metrics(scores: dict) -> dict[str, float]:
    """``{decoder}/{task}/{metric}`` -> value for every task row of the test evaluation (NaN dropped)."""
    flat = {}
    for decoder, by_task in scores.items():
        for task, metrics in by_task.items():
            for metric, v in metrics.items():
                if isinstance(v, (int, float)) and v == v:
                    flat[f"{decoder}/{task}/{metric}"] = float(v)
    return flat


def write_sums(base_dir: Path) -> str:
    """``SHA256SUMS`` over every file of the base (``sha256sum -c`` reads it); -> the digest of the weights."""
    lines = []
    for path in sorted(p for p in base_dir.rglob("*") if p.is_file() and p.name != SUMS_FILE):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(base_dir).as_posix()}")
    (base_dir / SUMS_FILE).write_text("\n".join(lines) + "\n")
    return next(line.split()[0] for line in lines if line.endswith("backbone/model.safetensors"))


def package_base(cfg: PretrainConfig, best_dir: Path, target: Path, sources: dict[Path, dict[str, Any]],
                 result, extra: dict[str, str] | None = None) -> Path:
    """Export the best checkpoint standalone into ``target`` as a ``stage: base`` checkpoint."""
    from framecall.config import to_dict
    from framecall.models.checkpoint import read_manifest, write_manifest
    from framecall.models.export import export_standalone

    export_standalone(best_dir, target)
    manifest = read_manifest(target)
    provenance = {
        "arch": cfg.arch, "seed": str(cfg.seed), "steps": str(manifest.global_step),
        "data": json.dumps(list(sources.values())), "config": json.dumps(to_dict(cfg)),
        "build_wall_s": f"{result.wall_s:.0f}", "mlflow_run_id": result.run_id,
        "built_by": "jobs/pretrain_base.py", **(extra or {}),
    }
    # sources live on the machine that built it: the manifest keeps what they held, not where
    write_manifest(target, replace(manifest, stage="base", mixture={source_name(s["task"], *s["seconds"]): 1.0
                                                                    for s in sources.values()},
                                   exported_from=None, metrics=per_task_metrics(result.test_scores),
                                   base_provenance=provenance))
    (target / TABLE_FILE).write_text(result.table + "\n")
    write_sums(target)
    return target


def package_checkpoint(cfg: PretrainConfig, ckpt_dir: Path) -> BaseResult:
    """Ship a checkpoint of a stopped build (a time budget reached before ``max_steps``): evaluate it on the
    test split of every source like ``fit`` does, then :func:`package_base` it into ``<output>/base``."""
    from types import SimpleNamespace

    from framecall.models.checkpoint import read_manifest
    from framecall.train.config import EvalSection
    from framecall.train.evaluate import evaluate_checkpoint

    t0 = time.time()
    target = Path(cfg.output).resolve() / "base"
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty; remove it or choose another --output")
    sources = make_base_data(cfg)  # present already: checked against their generator parameters, not rebuilt
    manifest = read_manifest(ckpt_dir).check(ckpt_dir, stage="frame", frame_head=True)
    tasks = ", ".join(sorted({s["task"] for s in sources.values()}))
    scores, table, _ = evaluate_checkpoint(ckpt_dir, list(sources), split="test", decoders=EvalSection().decoders,
                                           title=f"{manifest.loss} on {tasks} (test split, step "
                                                 f"{manifest.global_step}, stopped build)")
    result = SimpleNamespace(wall_s=time.time() - t0, run_id=manifest.mlflow_run_id or "", test_scores=scores,
                             table=table)
    package_base(cfg, ckpt_dir, target, sources, result,
                 extra={"packaged": f"stopped build, checkpoint {ckpt_dir.name} (jobs/pretrain_base.py --package); "
                                    "build_wall_s is the packaging time"})
    return BaseResult(target, table, result.wall_s)


def build_base(cfg: PretrainConfig) -> BaseResult:
    """Data, random start, multi-task frame training, export: -> the base under ``<output>/base``."""
    from framecall.train.runner import fit

    t0 = time.time()
    output = Path(cfg.output).resolve()
    target = output / "base"
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty; remove it or choose another --output")
    sources = make_base_data(cfg)
    init_dir = save_initial_backbone(cfg, output / "init")
    result = fit(train_config(cfg, sources, init_dir))
    package_base(cfg, result.best_checkpoint, target, sources, result)
    return BaseResult(target, result.table, time.time() - t0, result.registered_model)


def pretrain_main(argv: list[str] | None = None, doc: str = "") -> None:
    """``jobs/pretrain_base.py``: --config, named flags, dotted overrides, then :func:`build_base`."""
    import argparse

    from framecall.config import ConfigError, build_config, to_yaml

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with PretrainConfig keys")
    p.add_argument("--arch", choices=BASE_ARCHS)
    p.add_argument("--output", help="run directory (the base lands in OUTPUT/base)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--num-per-source", type=int, help="items per (task, duration range) shard directory")
    p.add_argument("--seed", type=int)
    p.add_argument("--package", metavar="CKPT",
                   help="no training: evaluate and ship this checkpoint of a stopped build (same config)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. hidden=192 layers=4 lr=5e-4")
    args = p.parse_args(argv)
    flags = {"arch": args.arch, "output": args.output, "max_steps": args.max_steps,
             "num_per_source": args.num_per_source, "seed": args.seed}
    try:
        cfg = build_config(PretrainConfig, args.config, flags, args.overrides)
    except (ConfigError, ValueError) as e:
        p.error(str(e))
    if args.print_config:
        print(to_yaml(cfg), end="")
        return
    result = package_checkpoint(cfg, Path(args.package)) if args.package else build_base(cfg)
    print()
    print(result.table)
    print()
    print(f"base: {result.base_dir}  (--model {result.base_dir}; ship it as "
          f"platform/framecall/models/bases/{cfg.arch}-base/ for --model {cfg.arch}-base)")
    if result.registered_model:
        print(f"registered: {result.registered_model}")
    print(f"wall time: {result.wall_s:.1f} s")


def build_preset(name: str, run: Path) -> Path:
    """A base preset built with the default :class:`PretrainConfig` into ``run`` -> its base directory."""
    return build_base(PretrainConfig(arch=BASE_PRESETS[name], output=str(run))).base_dir


register_base_builder(build_preset)  # a training job asking for a missing base preset builds it
