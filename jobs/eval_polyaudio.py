"""Run the PolyAudio benchmark: batched generation (Ray Data actor pool), judges, per-task table, MLflow.

    python jobs/eval_polyaudio.py --model tiny-qwen2-audio --bench runs/data/polyaudio_bench
    python jobs/eval_polyaudio.py --model runs/train_sft/best --baseline qwen2audio=/ckpt/Qwen2-Audio-7B-Instruct \
        --bench DIR --judge rule,llm --judge-url http://127.0.0.1:8000 --actors 2
    python jobs/eval_polyaudio.py --model /ckpt/single-audio-model --single-audio --bench DIR   # clips concatenated
    python jobs/eval_polyaudio.py --config eval.yaml limit=50 --print-config     # keys: EvalPolyAudioConfig
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.polyaudio import eval_cli  # noqa: E402


def main(argv=None) -> dict:
    return eval_cli.main(argv, __doc__)


if __name__ == "__main__":
    main()
