"""Train a Poisson-process frame head on an audio LM (the paper's method).

With no flags: makes the synthetic `words_all` corpus if missing, trains the tiny
Qwen2.5-Omni thinker on CPU, evaluates the eval.decoders its head reads on the test split, prints the table
and the MLflow run.

    python jobs/train_poisson.py
    python jobs/train_poisson.py --data DIR --model tiny-qwen2-audio --max-steps 500 \
        --num-workers 2 --output runs/p1 train.lr=3e-4 train.loss=poisson_conditional
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/train_poisson.py --output $PWD/runs/p1
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.cli import train_main  # noqa: E402

if __name__ == "__main__":
    train_main("poisson", doc=__doc__)
