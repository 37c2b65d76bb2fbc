"""Offline batch prediction through Ray Data with an actor pool (no server needed).

One result per input row under --output (<id>.json, .TextGrid or .ctm) and _index.json.
The flags are keys of :class:`PredictJobConfig`; ``--config FILE`` and dotted overrides
(``batch_size=16``) set them too, and ``--print-config`` shows the result without predicting.

    python jobs/predict.py --checkpoint runs/train_poisson/best --data runs/data/words_all_8k --output runs/pred
    python jobs/predict.py --checkpoint models:/framecall-poisson/1 --data DIR --output runs/tg --format textgrid
    python jobs/predict.py --config predict.yaml actors=2 --print-config
    RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/predict.py --checkpoint $PWD/runs/... \
        --data $PWD/runs/data/words_all_8k --output $PWD/runs/pred --actors 4
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from framecall.batch_predict import PredictConfig, predict_to_dir  # noqa: E402
from framecall.config import ConfigError, add_config_args, build_config, to_yaml  # noqa: E402


@dataclass
class PredictJobConfig:
    """What jobs/predict.py reads: the inputs and :class:`framecall.batch_predict.PredictConfig`'s keys."""

    checkpoint: str = ""
    """Checkpoint directory or models:/name/version (required)."""
    data: str = ""
    """Shard directory, or shard files separated by commas (required)."""
    output: str = ""
    """Directory for the results and _index.json (required)."""
    format: str = "json"
    num_events: str = "from-data"
    bad_rows: str = "fail"
    batch_size: int = 8
    actors: int = 1
    """Model replicas in the actor pool."""
    registry_uri: str | None = None

    def __post_init__(self) -> None:
        missing = [k for k in ("checkpoint", "data", "output") if not getattr(self, k)]
        if missing:
            raise ConfigError(f"missing {missing}: give --{missing[0]} (or {missing[0]}: in --config)")
        self.predict_config()  # format, num_events, bad_rows checked by the batch predictor's own config

    def predict_config(self) -> PredictConfig:
        return PredictConfig(checkpoint=self.checkpoint, output=self.output, format=self.format,
                             num_events=self.num_events, bad_rows=self.bad_rows, registry_uri=self.registry_uri,
                             batch_size=self.batch_size, actors=self.actors)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint directory or models:/name/version")
    p.add_argument("--data", help="shard directory, or shard files separated by commas")
    p.add_argument("--output")
    p.add_argument("--format", choices=["json", "textgrid", "ctm"])
    p.add_argument("--num-events", choices=["from-data", "estimate"])
    p.add_argument("--bad-rows", choices=["fail", "skip"])
    p.add_argument("--batch-size", type=int)
    p.add_argument("--actors", type=int, help="model replicas in the actor pool")
    add_config_args(p)
    args = p.parse_args(argv)
    flags = {k: getattr(args, k) for k in ("checkpoint", "data", "output", "format", "num_events", "bad_rows",
                                           "batch_size", "actors")}
    try:
        job = build_config(PredictJobConfig, args.config, flags, args.overrides)
    except (ConfigError, ValueError) as e:
        p.error(str(e))
    if args.print_config:
        print(to_yaml(job), end="")
        return {}
    from framecall.runtime import init_ray

    init_ray()
    data = job.data.split(",") if "," in job.data else job.data
    summary = predict_to_dir(data, job.predict_config())
    print(f"{summary['written']} of {summary['rows']} rows written to {job.output} "
          f"({summary['skipped']} skipped; index: {Path(job.output) / '_index.json'})")
    return summary


if __name__ == "__main__":
    main()
