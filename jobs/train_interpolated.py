"""Train with the interpolated loss L = T + lambda * P (the frame-level paper's section 4.6).

T is the token baseline's LM loss on the JSON answer, P the Poisson frame loss, in one
model. With the default prompt order (question first) one forward pass gives both; with
``train.token_prompt_order=audio_first`` the token loss takes a second pass in the chat
order. Evaluation reports the token output and the Poisson output side by side.

    python jobs/train_interpolated.py --data runs/data/words_all_8k train.interp_lambda=0.05
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/train_interpolated.py --output $PWD/runs/interp
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.cli import train_main  # noqa: E402

if __name__ == "__main__":
    train_main("interpolated", doc=__doc__)
