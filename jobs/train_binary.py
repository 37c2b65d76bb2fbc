"""Train a class-reweighted binary frame classifier head on an audio LM.

    python jobs/train_binary.py --data DIR --output runs/b1 [train.loss_options.pos_weight_scale=2.0]
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/train_binary.py --output $PWD/runs/b1
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.cli import train_main  # noqa: E402

if __name__ == "__main__":
    train_main("binary", doc=__doc__)
