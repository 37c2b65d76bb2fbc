"""Reproduce the paper's findings in miniature: Tables 2, 4 and 5 and decoders x losses.

Trains every model with the same budget, evaluates, writes OUTPUT/tables.md. Resumable:
finished runs (OUTPUT/<run>/test_metrics.json) are reused. ~18 models.

    python jobs/reproduce.py --steps 400 --eval-every 100 --num-items 1500 --output runs/reproduce
                                                                            # the run BENCHMARKS.md reports
    python jobs/reproduce.py --quick --output /tmp/repro                   # CI: tables are produced
    python jobs/reproduce.py --model /ckpt/Qwen2-Audio-7B --finetune lora --lg-task events --tables table4 \
        --output runs/reproduce_qwen                                        # a pretrained backbone
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.bench.reproduce import ReproduceConfig, Reproduction  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/reproduce")
    p.add_argument("--data-root", help="where the corpora are made (default OUTPUT/data)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--num-items", type=int, default=2000)
    p.add_argument("--lg-task", default="words", choices=["words", "speakers", "events"],
                   help="task of the length-generalization tables")
    p.add_argument("--tables", default="table2,table4,longer,table5,decoders",
                   help="table4: matched/mismatched answer windows; longer: Table 2's models on longer clips")
    p.add_argument("--lg-windows", default="0-4,0-8", help="Table 4's training windows (0-4 -> 4-8, 0-8 -> 8-12)")
    p.add_argument("--model", default="tiny-omni", help="backbone of every model: preset, checkpoint path")
    p.add_argument("--finetune", default="full", choices=["full", "lora", "head"],
                   help="how the backbone trains (a pretrained checkpoint: lora or head)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    cfg = ReproduceConfig(output=args.output, data_root=args.data_root or str(Path(args.output) / "data"),
                          steps=args.steps, eval_every=args.eval_every, num_items=args.num_items, quick=args.quick,
                          lg_task=args.lg_task, tables=tuple(args.tables.split(",")), model=args.model,
                          finetune=args.finetune, lg_windows=tuple(args.lg_windows.split(",")))
    print(Reproduction(cfg).run())
