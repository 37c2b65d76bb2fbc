"""Ray Tune sweep of the interpolation weight lambda or the binary class-weight scale (plus lr).

Every trial runs the training job's own loop (a TorchTrainer inside the trial, metrics
forwarded by TuneReportCallback); ASHA stops weak trials at its rungs; MLflow gets a parent
run and one child per trial; OUTPUT/best_config.yaml trains with `jobs/train_*.py --config`.

    python jobs/tune_sweep.py --loss interpolated --data runs/data/words_all_8k --num-samples 8 \
        train.max_steps=600 train.eval_every=100 --output runs/sweep_lambda
    python jobs/tune_sweep.py --loss binary --num-samples 8 sweep.max_concurrent_trials=2 ray.num_workers=1
    python jobs/tune_sweep.py --loss interpolated --output runs/sweep_lambda --resume   # after an interruption
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/tune_sweep.py --loss binary --output $PWD/runs/s
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.cli import sweep_main  # noqa: E402

if __name__ == "__main__":
    sweep_main(doc=__doc__)
