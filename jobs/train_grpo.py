"""Stage 2 of the multi-audio recipe: GRPO on PolyAudio's preference split, learner on Ray
Train, rollouts on separate Ray actors. The SFT adapter is merged into the base once and a
fresh adapter is trained; with the adapter off the model is the SFT policy (the KL reference).

    python jobs/train_grpo.py --policy runs/train_sft/best --output runs/train_grpo
    python jobs/train_grpo.py --policy runs/train_sft/best --rollout-actors 2 --max-steps 50 grpo.kl_coef=0.01
    python jobs/train_grpo.py --policy tiny-omni ...          # GRPO only: the reference is the base
    python jobs/train_grpo.py --config jobs/configs/grpo_7b.yaml --policy /ckpt/sft --data /data/poly_pref
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/train_grpo.py --policy $PWD/runs/train_sft/best \
        --output $PWD/runs/grpo
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.grpo.cli import grpo_main  # noqa: E402

if __name__ == "__main__":
    grpo_main(doc=__doc__)
