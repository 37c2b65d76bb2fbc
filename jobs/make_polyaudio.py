"""Make a PolyAudio split (train / preference / bench) as shards, from (generator version, seed).

The flags are keys of :class:`MakePolyAudioConfig` (PolyConfig's plus ``output``); ``--config FILE``
and dotted overrides (``max_clips=3``) set them too; ``--print-config`` shows the result and exits.

    python jobs/make_polyaudio.py --split bench --output runs/data/polyaudio_bench          # 250 x 11 items
    python jobs/make_polyaudio.py --split train --per-task 2000 --seed 0 --output runs/data/polyaudio_train
"""

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.config import ConfigError, add_config_args, config_from_args, to_dict  # noqa: E402
from framecall.polyaudio.bench import PolyConfig  # noqa: E402


@dataclass
class MakePolyAudioConfig(PolyConfig):
    output: str = ""
    """Directory for the shards and _manifest.json (required)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.output:
            raise ConfigError("missing output: give --output (or output: in --config)")

    def poly(self) -> PolyConfig:
        return PolyConfig(**{k: v for k, v in to_dict(self).items() if k != "output"})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=["train", "preference", "bench"])
    p.add_argument("--per-task", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--tasks", help="task names separated by commas (default: all)")
    p.add_argument("--output")
    add_config_args(p)
    args = p.parse_args(argv)
    flags = {"split": args.split, "per_task": args.per_task, "seed": args.seed, "tasks": args.tasks,
             "output": args.output}
    job = config_from_args(p, args, MakePolyAudioConfig, flags)
    if job is None:
        return
    write_split(job.poly(), Path(job.output))


def write_split(cfg: PolyConfig, output: Path) -> None:
    """Generate and write the split, with a progress bar on a terminal (tqdm stays quiet in logs)."""
    from tqdm import tqdm

    from framecall.data.shards import ShardWriter
    from framecall.polyaudio.bench import generate_items

    n = len(cfg.tasks) * cfg.per_task
    t0 = time.time()
    with ShardWriter(output, params={"polyaudio": to_dict(cfg)}) as writer:
        writer.write_all(tqdm(generate_items(cfg), total=n, desc="PolyAudio items", unit="item", disable=None))
    wall = time.time() - t0
    size = sum(f.stat().st_size for f in output.glob("*.parquet"))
    print(f"{n} items in {wall:.1f} s ({n / wall:.1f} items/s), {size / 1e6:.1f} MB -> {output}")


if __name__ == "__main__":
    main()
