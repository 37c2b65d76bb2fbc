"""Stage 1 of the multi-audio recipe: LoRA SFT of an audio LM on PolyAudio's train split.

With no flags: makes a small synthetic PolyAudio train split if missing, trains a LoRA adapter
on the tiny Qwen2.5-Omni thinker on CPU (Ray Train workers), registers it as framecall-sft.

    python jobs/train_sft.py --output runs/train_sft
    python jobs/train_sft.py --data runs/data/polyaudio_train --model tiny-omni --max-steps 200 lora.r=16
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/train_sft.py --output $PWD/runs/sft
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.grpo.cli import sft_main  # noqa: E402

if __name__ == "__main__":
    sft_main(doc=__doc__)
