"""Make a PolyAudio split (train / preference / bench) as shards, from (generator version, seed).

    python jobs/make_polyaudio.py --split bench --output runs/data/polyaudio_bench          # 250 x 11 items
    python jobs/make_polyaudio.py --split train --per-task 2000 --seed 0 --output runs/data/polyaudio_train
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.config import to_dict  # noqa: E402
from framecall.data.shards import ShardWriter  # noqa: E402
from framecall.polyaudio.bench import PolyConfig, generate_items  # noqa: E402
from framecall.polyaudio.tasks import GENERATORS  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="bench", choices=["train", "preference", "bench"])
    p.add_argument("--per-task", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default=",".join(GENERATORS))
    p.add_argument("--output", required=True)
    args = p.parse_args()
    cfg = PolyConfig(split=args.split, per_task=args.per_task, seed=args.seed, tasks=args.tasks.split(","))
    t0 = time.time()
    with ShardWriter(args.output, params={"polyaudio": to_dict(cfg)}) as writer:
        writer.write_all(generate_items(cfg))
    wall = time.time() - t0
    n = len(cfg.tasks) * cfg.per_task
    size = sum(f.stat().st_size for f in Path(args.output).glob("*.parquet"))
    print(f"{n} items in {wall:.1f} s ({n / wall:.1f} items/s), {size / 1e6:.1f} MB -> {args.output}")
