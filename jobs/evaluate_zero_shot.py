"""Table 1: zero-shot timestamps from any audio LM (the paper's prompts + the JSON answer format,
greedy answers, lenient parsing with the parse-failure rate, words at 20/40 ms, speakers and events
at 40/100 ms, MAD).

    python jobs/evaluate_zero_shot.py --model tiny-omni --model tiny-qwen2-audio \
        --data runs/data/zs_words_all --data runs/data/zs_speakers --data runs/data/zs_events
    python jobs/evaluate_zero_shot.py --model /ckpt/Qwen2-Audio-7B-Instruct --data DIR --device cuda --batch-size 16
    OPENAI_API_KEY=... python jobs/evaluate_zero_shot.py --model openai:https://api.openai.com/v1 \
        --api-model gpt-4o-audio-preview --concurrency 8 --data DIR
    python jobs/evaluate_zero_shot.py --config zs.yaml limit=20 --print-config   # keys: ZeroShotConfig

On a cluster: ``ray job submit --working-dir . -- python jobs/evaluate_zero_shot.py ...``.
Writes OUTPUT/table1.md, scores.json, answers_<i>.jsonl (every answer, its parse status and times)
and config.resolved.yaml.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.bench import zero_shot_cli  # noqa: E402


def main(argv=None) -> dict:
    return zero_shot_cli.main(argv, __doc__)


if __name__ == "__main__":
    main()
