"""Helpers shared by test modules (conftest puts this directory on sys.path)."""

from framecall.config import build_config
from framecall.train.config import TrainJobConfig


def train_config(tmp_path, data, mlflow_uri, loss="poisson", steps=4, **extra):
    overrides = [f"train.loss={loss}", f"train.max_steps={steps}", "train.eval_every=2", "train.batch_size=2",
                 "train.warmup_steps=1", "ray.num_workers=2", "ray.cpus_per_worker=1", "eval.figures=1",
                 f"mlflow.tracking_uri={mlflow_uri}", f"mlflow.run_name={tmp_path.name}", "data.make_if_missing=false",
                 *[f"{k}={v}" for k, v in extra.items()]]
    return build_config(TrainJobConfig, flags={"data.data_dir": str(data), "output": str(tmp_path / "out")},
                        overrides=overrides)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_manifest(**fields):
    """A valid CheckpointManifest of the tiny Omni backbone with a Poisson head; ``fields`` override."""
    from framecall.audio.features import FeatureParams
    from framecall.models.checkpoint import CheckpointManifest, LoraSpec

    base = dict(backbone="tiny-omni", model_type="qwen2_5_omni", head="poisson", loss="poisson",
                default_decoder="topn_nms", frame_s=0.04, subframes=4, features=FeatureParams())
    base.update(fields)
    if isinstance(base.get("lora"), dict):
        base["lora"] = LoraSpec(**base["lora"])
    return CheckpointManifest(**base)


def make_checkpoint(path, tasks, head="poisson", model="tiny-omni", seed=0, token_output=False):
    """An untrained but non-trivial checkpoint (random head) with a real manifest, no Ray."""
    from pathlib import Path

    import torch

    from framecall.models.checkpoint import write_manifest
    from framecall.models.frame_model import build_frame_model, save_weights

    torch.manual_seed(seed)
    frame_model = build_frame_model(model, head, 4)
    with torch.no_grad():  # a curve with structure, so that decoding differences would show
        frame_model.head.proj.weight.normal_(0, 0.5)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_weights(frame_model, path)
    write_manifest(path, tiny_manifest(backbone=model, head=head, loss=head, tasks=list(tasks),
                                       token_output=token_output, token_prompt_order="question_first"))
    return path


def wav_bytes(samples, sample_rate=16000):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def speech_clip(text="the cat sat on the mat", seed=0, seconds=None):
    """(16 kHz float32 speech, words) from espeak."""
    import numpy as np

    from framecall.audio.espeak import get_synthesizer
    from framecall.audio.io import resample

    utt = get_synthesizer().synthesize(text, seed=seed)
    audio, words = resample(utt.samples, utt.sample_rate, 16000), [w.text for w in utt.words]
    if seconds is not None:
        out = np.zeros(int(seconds * 16000), np.float32)
        out[: min(out.size, audio.size)] = audio[: out.size]
        audio = out
    return audio.astype(np.float32), words
