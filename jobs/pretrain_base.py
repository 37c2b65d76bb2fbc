"""Pretrain a tiny base (issue #21): the tiny backbone on a multi-task synthetic mixture.

Word, words_all, speaker and event localization over 1-8 s and 8-15 s clips, questions about every
position, one Poisson frame head; the result (OUTPUT/base: manifest with data, steps, seed, config and
test metrics per task; backbone/ loads with from_pretrained; SHA256SUMS) is what the presets
``--model tiny-omni-base`` / ``tiny-qwen2-audio-base`` start from.

    python jobs/pretrain_base.py --arch tiny-omni --output runs/base_omni
    python jobs/pretrain_base.py --arch tiny-qwen2-audio --max-steps 500 --num-per-source 200 hidden=96 layers=2
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/pretrain_base.py --output $PWD/runs/base
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.pretrain import pretrain_main  # noqa: E402

if __name__ == "__main__":
    pretrain_main(doc=__doc__)
