"""Make a synthetic shard corpus (the embedded default data; no downloads).

    python jobs/make_data.py --task words_all --num 200 --output data/words_all
    python jobs/make_data.py --task words --num 2000 --output data/w8 \
        --min-seconds 8 --max-seconds 12 --answer-window 4,8 --seed 1
    python jobs/make_data.py --task words_all --num 2000 --heldout-num 100 \
        --heldout-voices en-us-nyc,+klatt --target-format json_objects --output data/wj

On a cluster: ``ray job submit --working-dir . -- python jobs/make_data.py ...``.
Writes DIR/shard-*.parquet and DIR/_manifest.json, then prints the corpus statistics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.config import build_config, save_yaml, to_yaml  # noqa: E402
from framecall.data.shards import ShardWriter  # noqa: E402
from framecall.data.stats import format_stats, shard_stats  # noqa: E402
from framecall.data.synthetic import SynthConfig, generate, synth_params  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with SynthConfig keys")
    p.add_argument("--output", required=True, help="empty directory for shards + manifest")
    p.add_argument("--task", choices=["words", "words_all", "speakers", "events"])
    p.add_argument("--num", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--min-seconds", type=float)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--answer-window", help="A,B seconds: only ask about events in [A, B]")
    p.add_argument("--snr-db", type=float)
    p.add_argument("--heldout-voices", help="voice families kept out of the splits: en-us-nyc,+klatt,en+f5")
    p.add_argument("--heldout-num", type=int, help="extra items spoken by held-out voices (split test_heldout_voice)")
    p.add_argument("--target-format", choices=["compact", "json_objects"], help="words_all token target")
    p.add_argument("--print-config", action="store_true", help="print the resolved SynthConfig as YAML and exit")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. max_speakers=5")
    args = p.parse_args(argv)
    flags = {"task": args.task, "num": args.num, "seed": args.seed, "min_seconds": args.min_seconds,
             "max_seconds": args.max_seconds, "answer_window": args.answer_window, "snr_db": args.snr_db,
             "heldout_voices": args.heldout_voices, "heldout_num": args.heldout_num,
             "target_format": args.target_format}
    cfg = build_config(SynthConfig, args.config, flags, args.overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return
    out = Path(args.output).resolve()
    with ShardWriter(out, rows_per_shard=cfg.rows_per_shard, params=synth_params(cfg, made_by="jobs/make_data.py")) as writer:
        writer.write_all(generate(cfg))
    save_yaml(cfg, out / "_synth_config.yaml")
    print(format_stats(shard_stats(out)))


if __name__ == "__main__":
    main()
