"""GPU smoke check: one training step, one evaluation and one served request on a real checkpoint, timed.

    python jobs/gpu_smoke.py --config jobs/configs/frame_qwen2_5_omni_7b.yaml --model /mnt/ckpt/Qwen2.5-Omni-7B \
        --data /mnt/shared/data/words --output /tmp/smoke
    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/gpu_smoke.py --config jobs/configs/frame_qwen2_audio_7b.yaml --model /mnt/ckpt/Qwen2-Audio-7B-Instruct \
        --data /mnt/shared/data/words --output /mnt/shared/runs/smoke

Prints the device and dtype it ran with, each phase's wall time and the peak GPU memory. Without --config it
runs the tiny default model on CPU (what the test runs); the data must have train, val and test splits.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.bench.smoke import run_smoke  # noqa: E402
from framecall.config import build_config  # noqa: E402
from framecall.train.config import TrainJobConfig  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a preset, e.g. jobs/configs/frame_qwen2_5_omni_7b.yaml")
    p.add_argument("--model", help="checkpoint directory (overrides model.name)")
    p.add_argument("--data", required=True, help="shard directory with train/val/test splits")
    p.add_argument("--output", required=True)
    p.add_argument("--port", type=int, default=8123, help="Serve's HTTP port on 127.0.0.1")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.batch_size=1")
    args = p.parse_args(argv)
    flags = {"model.name": args.model, "data.data_dir": args.data, "output": args.output,
             "data.make_if_missing": False}
    cfg = build_config(TrainJobConfig, args.config, flags, args.overrides)
    for line in run_smoke(cfg, port=args.port).lines():
        print(line)


if __name__ == "__main__":
    main()
