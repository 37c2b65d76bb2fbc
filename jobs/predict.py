"""Offline batch prediction through Ray Data with an actor pool (no server needed).

Inputs (--input, --input-format auto|audio-dir|list|lhotse|hf|shards; see framecall.data.inputs):
a folder of audio files, a list file (PATH<TAB>question or transcript), a lhotse CutSet manifest,
a Hugging Face datasets folder with an Audio column, or framecall shards (--data is --input of shards).
Plain audio is asked --question, else the alignment question of its transcript.

One result per input row under --output (<id>.json, .TextGrid, .ctm, .srt or .vtt) and _index.json (failures
counted by reason). The exit status is 1 when any row failed. The flags are keys of
:class:`PredictJobConfig`; ``--config FILE`` and dotted overrides (``batch_size=16``) set them too,
and ``--print-config`` shows the result without predicting.

    python jobs/predict.py --checkpoint runs/train_poisson/best --data runs/data/words_all_8k --output runs/pred
    python jobs/predict.py --checkpoint runs/train_poisson/best --input recordings/ --output runs/pred \
        --question "When does the 1st occurrence of the word 'cat' occur?"
    python jobs/predict.py --checkpoint CKPT --input cuts.jsonl.gz --output runs/tg --format textgrid
    python jobs/predict.py --checkpoint CKPT --input hf_dir --transcript-column text --output runs/ctm --format ctm
    python jobs/predict.py --checkpoint CKPT --input talks.tsv --output runs/subs --format vtt   # PATH<TAB>transcript
    python jobs/predict.py --checkpoint models:/framecall-poisson/1 --data DIR --output runs/tg --format textgrid
    python jobs/predict.py --config predict.yaml actors=2 --print-config
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/predict.py --checkpoint $PWD/runs/... \
        --data $PWD/runs/data/words_all_8k --output $PWD/runs/pred --actors 4
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall import predict_cli  # noqa: E402


def main(argv=None) -> dict:
    return predict_cli.main(argv, __doc__)


def cli(argv=None) -> int:
    return predict_cli.cli(argv, __doc__)


if __name__ == "__main__":
    sys.exit(cli())
