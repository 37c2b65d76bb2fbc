"""Train the token baseline: the same backbone learns to print the JSON timestamp list.

The LM loss on the target text (``[0.21, 0.49, ...]`` or ``[{"word": ..., "start": ...}]``)
after the prompt in the model's chat order (audio, then question). Evaluation generates
greedily with the KV cache, parses leniently and reports the parse-failure rate beside
acc@20/40/100 ms and MAD; unusable outputs count as misses.

    python jobs/train_tokens.py --data runs/data/words_all_8k --output runs/tokens
    python jobs/train_tokens.py model.finetune=lora train.lr=3e-4 train.token_prompt_order=question_first
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/train_tokens.py --output $PWD/runs/tokens
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.train.cli import train_main  # noqa: E402

if __name__ == "__main__":
    train_main("tokens", doc=__doc__)
