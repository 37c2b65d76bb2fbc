"""The command line of ``jobs/predict.py`` and ``framecall predict``: its typed config, flags and run
(batch prediction over shards or plain audio, :mod:`framecall.batch_predict`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from framecall.batch_predict import PredictConfig, predict_to_dir
from framecall.serving import OUTPUT_FORMATS
from framecall.config import ConfigError, add_config_args, config_from_args
from framecall.data.inputs import INPUT_FORMATS, InputError, detect_format, read_inputs


@dataclass
class PredictJobConfig:
    """What jobs/predict.py reads: the inputs and :class:`framecall.batch_predict.PredictConfig`'s keys."""

    checkpoint: str = ""
    """Checkpoint directory or models:/name/version (required)."""
    input: str = ""
    """Audio folder or file, list file, lhotse manifest, datasets folder, or shards (this or data required)."""
    input_format: str = "auto"
    """auto | audio-dir | list | lhotse | hf | shards (auto: from the name and contents)."""
    data: str = ""
    """Shard directory, or shard files separated by commas (the same as --input with shards)."""
    output: str = ""
    """Directory for the results and _index.json (required)."""
    question: str | None = None
    """The question asked of every plain-audio item (default: its transcript's alignment question)."""
    transcript_column: str | None = None
    """hf: the column holding each row's transcript."""
    format: str = "json"
    num_events: str = "from-data"
    bad_rows: str = "auto"
    """fail | skip | auto (fail for shards; skip for plain audio, where the run finishes for the rest)."""
    progress: str = "auto"
    """on | off | auto (on at a terminal): Ray Data bars and a count line every 10 s."""
    batch_size: int = 8
    actors: int = 1
    """Model replicas in the actor pool."""
    gpus_per_actor: float = 0.0
    """GPUs each model replica holds (fractions below 1 share a GPU); 0 on CPU clusters."""
    device: str = "auto"
    """auto (the actor's GPU when gpus_per_actor > 0, else cpu) | cpu | cuda | cuda:N."""
    dtype: str = "auto"
    """auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16."""
    registry_uri: str | None = None

    def __post_init__(self) -> None:
        missing = [k for k in ("checkpoint", "output") if not getattr(self, k)]
        if not (self.input or self.data):
            missing.insert(0, "input")
        if missing:
            raise ConfigError(f"missing {missing}: give --{missing[0]} (or {missing[0]}: in --config)")
        if self.input and self.data:
            raise ConfigError("give --input or --data, not both (--data is --input of shards)")
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(f"input_format: unknown input format {self.input_format!r}; valid: {list(INPUT_FORMATS)}")
        if self.bad_rows not in ("auto", "fail", "skip"):
            raise ConfigError(f"bad_rows must be auto, fail or skip, got {self.bad_rows!r}")
        self.predict_config("shards")  # format, num_events, progress checked by the batch predictor's own config

    def resolved_format(self) -> str:
        """The input's format (auto detected from the name and contents)."""
        if self.data:
            return "shards"
        return detect_format(self.input) if self.input_format == "auto" else self.input_format

    def predict_config(self, input_format: str) -> PredictConfig:
        bad_rows = self.bad_rows if self.bad_rows != "auto" else ("fail" if input_format == "shards" else "skip")
        return PredictConfig(checkpoint=self.checkpoint, output=self.output, format=self.format,
                             num_events=self.num_events, bad_rows=bad_rows, registry_uri=self.registry_uri,
                             batch_size=self.batch_size, actors=self.actors, progress_bars=self.progress,
                             gpus_per_actor=self.gpus_per_actor, device=self.device, dtype=self.dtype)


HELP = """Batch prediction in a Ray Data actor pool (no server needed). --input is a folder of audio
files, a list file (PATH<TAB>question or transcript), a lhotse manifest, a Hugging Face datasets
folder or framecall shards; one result per row under --output plus _index.json (failures counted by
reason); exit status 1 when any row failed.

    framecall predict --checkpoint runs/train_poisson/best --input recordings/ --output runs/pred \\
        --question "When does the 1st occurrence of the word 'cat' occur?"
    framecall predict --checkpoint CKPT --input cuts.jsonl.gz --output runs/subs --format srt
"""


def parse(argv=None, doc: str | None = None, prog: str | None = None) -> PredictJobConfig | None:
    """-> the job's config, or None after --print-config printed it (``doc``: the --help text)."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint directory or models:/name/version")
    p.add_argument("--input", help="audio folder or file, list file, lhotse manifest, datasets folder, shards")
    p.add_argument("--input-format", help=f"one of {', '.join(INPUT_FORMATS)} (default auto)")
    p.add_argument("--data", help="shard directory, or shard files separated by commas")
    p.add_argument("--output")
    p.add_argument("--question", help="asked of every plain-audio item (default: its transcript's alignment)")
    p.add_argument("--transcript-column", help="hf: the column holding the transcript")
    p.add_argument("--format", choices=list(OUTPUT_FORMATS))
    p.add_argument("--num-events", choices=["from-data", "estimate"])
    p.add_argument("--bad-rows", choices=["auto", "fail", "skip"])
    p.add_argument("--progress", choices=["auto", "on", "off"])
    p.add_argument("--batch-size", type=int)
    p.add_argument("--actors", type=int, help="model replicas in the actor pool")
    add_config_args(p)
    args = p.parse_args(argv)
    flags = {k: getattr(args, k) for k in ("checkpoint", "input", "input_format", "data", "output", "question",
                                           "transcript_column", "format", "num_events", "bad_rows", "progress",
                                           "batch_size", "actors")}
    return config_from_args(p, args, PredictJobConfig, flags)


def main(argv=None, doc: str | None = None, prog: str | None = None) -> dict:
    """Predict; -> the summary written to OUTPUT/_index.json ({} after --print-config)."""
    job = parse(argv, doc, prog)
    if job is None:
        return {}
    try:
        fmt = job.resolved_format()
        items = None if fmt == "shards" else read_inputs(job.input, fmt, job.question, job.transcript_column)
    except InputError as e:
        raise SystemExit(f"predict: --input: {e}") from None
    from framecall.runtime import init_ray

    init_ray()
    source = job.data or job.input
    data = (source.split(",") if "," in source else source) if fmt == "shards" else None
    summary = predict_to_dir(data, job.predict_config(fmt), items=items)
    failed = ", ".join(f"{reason}: {n}" for reason, n in summary["failures"].items())
    print(f"{summary['written']} of {summary['rows']} rows written to {job.output} "
          f"({summary['skipped']} failed{f' ({failed})' if failed else ''}; index: {Path(job.output) / '_index.json'})")
    return summary


def cli(argv=None, doc: str | None = None, prog: str | None = None) -> int:
    """The exit status: 1 when any row failed."""
    return 1 if main(argv, doc, prog).get("skipped") else 0
