"""Evaluate a frame-model checkpoint: acc@20/40/100 ms, MAD and count error per decoder.

    python jobs/evaluate.py --checkpoint runs/train_poisson/best --data runs/data/words_all_8k \
        --output-json runs/eval.json [--split test --decoders topn_nms,smoothed_posterior_mode]
        [--pairings positional,greedy,hungarian_l1,hungarian_acc --conventions paper]

Default: every registered decoder the checkpoint's head reads (plus generated answers), scored with
positional and accuracy-optimal Hungarian pairing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.cli import evaluate_main  # noqa: E402

if __name__ == "__main__":
    evaluate_main(doc=__doc__)
