"""Export a checkpoint as a standalone one: LoRA adapters merged into the base weights, the
backbone saved inside (a plain Hugging Face checkpoint under OUTPUT/backbone/).

    python jobs/export_model.py --checkpoint runs/train_poisson/best --output runs/exported
    MLFLOW_TRACKING_URI=sqlite:///$PWD/runs/train_poisson/mlflow.db \
        python jobs/export_model.py --checkpoint models:/framecall-poisson/1 --output runs/exported
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.models.export import export_standalone  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory or models:/name/version")
    p.add_argument("--output", required=True, help="new directory (must not exist or be empty)")
    args = p.parse_args()
    out = export_standalone(args.checkpoint, args.output)
    print(f"standalone checkpoint: {out}  (backbone: {out / 'backbone'})")
