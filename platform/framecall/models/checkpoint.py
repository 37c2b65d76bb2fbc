"""The checkpoint format: a typed manifest (format version 2) and the weight files it names.

A checkpoint is a directory::

    manifest.json      CheckpointManifest (every field documented below and in docs/architecture.md)
    model.safetensors  trainable weights: everything (full), LoRA adapters + head (lora), or the head
    adapter/           a peft adapter (adapter_config.json + adapter_model.safetensors), stages sft/grpo
    training_state.pt  optimizer, scheduler, step (training checkpoints only; loaded weights_only)

The manifest is read and written through :mod:`framecall.config` (``from_dict``/``to_dict``), so an
unknown or missing key is a clear error naming the file, like a config error. Version 1 manifests
(before this type existed) load through :func:`upgrade_v1`; any other version is refused by name.
Every consumer states what it depends on with :meth:`CheckpointManifest.check`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Literal

from framecall.audio.features import FeatureParams
from framecall.config import ConfigError, from_dict, to_dict

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
ADAPTER_DIR = "adapter"
TRAINING_STATE = "training_state.pt"

Stage = Literal["frame", "sft", "grpo", "base"]
HEAD_KINDS = ("poisson", "binary", "tokens")
MODEL_TYPES = ("qwen2_5_omni", "qwen2_audio")
FINETUNE_MODES = ("full", "lora", "head")
PROMPT_ORDERS = ("question_first", "audio_first")
WEIGHTS_HEAD_KEY = "framecall.head"
"""safetensors metadata key of model.safetensors recording the head kind it was saved with: Poisson
and binary heads hold identical tensors, so only this (digest-checked with the weights) tells a
swapped manifest ``head`` field apart."""


class CheckpointError(ValueError):
    """A checkpoint directory that is missing pieces or does not fit what is asked of it."""


class OutsideRootsError(CheckpointError):
    """A file a checkpoint names (its directory, a symlink in it, its backbone) lies outside the allowed roots."""


@dataclass
class LoraSpec:
    """How the LoRA adapters of a ``finetune: lora`` checkpoint were made (peft ``LoraConfig``)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Projection names inside the language model (never the audio encoder)."""
    modules_to_save: list[str] = field(default_factory=list)
    """Whole modules trained and saved beside the adapters (peft ``modules_to_save``), e.g. ``lm_head``."""


@dataclass
class CheckpointManifest:
    """``manifest.json`` of a framecall checkpoint, format version 2."""

    backbone: str
    """Tiny preset name, local path, or a directory relative to the checkpoint (an export)."""
    model_type: str
    """qwen2_5_omni | qwen2_audio (the backbone adapter's kind)."""
    head: str
    """poisson | binary (a frame head) | tokens (text answers only)."""
    loss: str
    """The training loss as named in the registry (``tokens``, ``poisson``, ``interpolated+poisson``...)."""
    default_decoder: str
    """Decoder Serve and evaluation use unless told otherwise (``tokens`` for text models)."""
    frame_s: float
    """Seconds per audio token (0.04 for both Qwen backbones)."""
    subframes: int
    """Sub-frames the head emits per audio token (S)."""
    features: FeatureParams
    """Log-mel parameters the model was trained with."""
    format_version: int = FORMAT_VERSION
    stage: Stage = "frame"
    """frame (frame head / token baseline) | sft (multi-audio LoRA SFT) | grpo | base (a pretrained base)."""
    parent: str | None = None
    """The checkpoint this one was trained from (SFT's base, GRPO's SFT policy); None: the backbone."""
    policy_version: int | None = None
    """GRPO: the learner's weight version at this checkpoint (rollouts must hold the same)."""
    objective: str = "frame"
    """frame | tokens | interpolated."""
    token_output: bool = False
    token_prompt_order: str = "audio_first"
    interp_lambda: float | None = None
    prompt_order: str = "question_first"
    """Where the question sits relative to the audio for the frame head."""
    system_prompt: str | None = None
    """A system turn prepended to every prompt (None: none)."""
    bidirectional_audio: bool = False
    """Audio positions attend to each other in both directions inside the decoder."""
    head_init_bias: float | None = None
    """The frame head's initial bias (None: the head's default)."""
    finetune: str = "full"
    """full | lora | head: which weights model.safetensors holds."""
    lora: LoraSpec | None = None
    adapter: str | None = None
    """Directory (relative to the checkpoint) of a peft adapter, for stages sft and grpo."""
    merged_parents: list[str] = field(default_factory=list)
    """Adapters already merged into ``backbone``: merging one twice is refused."""
    nms_min_separation: int = 3
    """Sub-frames between events for the NMS decoders."""
    tasks: list[str] = field(default_factory=list)
    mixture: dict[str, float] = field(default_factory=dict)
    global_step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    weights_sha256: dict[str, str] = field(default_factory=dict)
    """sha256 of each weights file, relative path -> hex digest; checked on load."""
    mlflow_run_id: str | None = None
    mlflow_tracking_uri: str | None = None
    git_sha: str | None = None
    data_manifest_sha256: str | None = None
    base_provenance: dict[str, str] = field(default_factory=dict)
    """For a pretrained base (stage base) or a run started from one: its data, steps and digest."""
    exported_from: dict[str, Any] | None = None
    """Set by the standalone export: the source checkpoint and what was merged."""

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"format_version {self.format_version}, this code reads {FORMAT_VERSION}")
        if self.subframes < 1 or self.frame_s <= 0:
            raise ValueError("subframes must be >= 1 and frame_s > 0")
        for name, allowed in (("head", HEAD_KINDS), ("model_type", MODEL_TYPES), ("finetune", FINETUNE_MODES),
                              ("prompt_order", PROMPT_ORDERS), ("token_prompt_order", PROMPT_ORDERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        if self.finetune == "lora" and self.lora is None:
            raise ValueError("finetune 'lora' needs the lora section")
        for name, rel in [*(("weights_sha256", k) for k in self.weights_sha256), ("adapter", self.adapter or "")]:
            if rel and (Path(rel).is_absolute() or ".." in Path(rel).parts):
                raise ValueError(f"{name}: {rel!r} must be a path inside the checkpoint (relative, no '..')")

    def check(self, where: str | Path, *, head: str | None = None, subframes: int | None = None,
              stage: Stage | tuple[Stage, ...] | None = None, model_type: str | None = None,
              frame_head: bool = False, token_output: bool = False) -> CheckpointManifest:
        """Refuse a checkpoint that does not fit what the caller depends on; -> self."""
        problems = []
        if head is not None and self.head != head:
            problems.append(f"has a {self.head!r} head, but a {head!r} head was asked for")
        if subframes is not None and self.subframes != subframes:
            problems.append(f"has {self.subframes} sub-frames, expected {subframes}")
        stages = (stage,) if isinstance(stage, str) else stage
        if stages is not None and self.stage not in stages:
            problems.append(f"is a {self.stage!r} checkpoint, expected {' or '.join(map(repr, stages))}")
        if model_type is not None and self.model_type != model_type:
            problems.append(f"has a {self.model_type} backbone, expected {model_type}")
        if frame_head and self.head not in ("poisson", "binary"):
            problems.append(f"has no frame head (head {self.head!r})")
        if token_output and not (self.token_output or self.head == "tokens"):
            problems.append("has no token output (trained with a frame loss only)")
        if problems:
            raise CheckpointError(f"{where}: checkpoint " + "; ".join(problems))
        return self

    def to_json(self) -> str:
        return json.dumps(to_dict(self), indent=2)


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A format-1 manifest dict -> format 2: the same keys, the version bumped, LoRA's old
    ``r/alpha/targets`` kept, and ``stage`` frame (v1 only knew frame-head and token runs)."""
    out = {k: v for k, v in data.items() if k != "format_version"}
    if isinstance(out.get("lora"), dict) and out["lora"].get("targets") is None:
        out["lora"] = {k: v for k, v in out["lora"].items() if k != "targets"}
    return {**out, "format_version": FORMAT_VERSION, "stage": "frame"}


UPGRADES = {1: upgrade_v1}
"""format version -> function that lifts a manifest dict of that version one step up to the current one."""


def manifest_from_dict(data: dict[str, Any], where: str | Path = "manifest") -> CheckpointManifest:
    version = data.get("format_version")
    if version in UPGRADES:
        data = UPGRADES[version](data)
    elif version != FORMAT_VERSION:
        raise CheckpointError(f"{where}: manifest format_version {version!r} is not readable by this framecall "
                              f"(reads {sorted(UPGRADES)} by upgrade and {FORMAT_VERSION}); re-export it with "
                              "the framecall version that wrote it, or retrain")
    try:
        return from_dict(CheckpointManifest, data)
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


def read_manifest(ckpt_dir: str | Path) -> CheckpointManifest:
    path = Path(ckpt_dir) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{ckpt_dir}: no {MANIFEST} (not a framecall checkpoint)")
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return manifest_from_dict(data, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(ckpt_dir: str | Path, manifest: CheckpointManifest) -> CheckpointManifest:
    """Write ``manifest.json`` with the digest of every weights file present; -> what was written."""
    ckpt_dir = Path(ckpt_dir)
    files = [ckpt_dir / WEIGHTS, *sorted((ckpt_dir / ADAPTER_DIR).glob("*.safetensors"))]
    digests = {str(p.relative_to(ckpt_dir)): file_sha256(p) for p in files if p.is_file()}
    manifest = replace(manifest, weights_sha256=digests)
    (ckpt_dir / MANIFEST).write_text(manifest.to_json())
    return manifest


def verify_weights(ckpt_dir: str | Path, manifest: CheckpointManifest) -> None:
    """Refuse a weights file whose digest differs from the manifest's (truncated, swapped, edited)."""
    for rel, want in manifest.weights_sha256.items():
        path = Path(ckpt_dir) / rel
        if not path.is_file():
            raise CheckpointError(f"{path}: weights file named in the manifest is missing")
        got = file_sha256(path)
        if got != want:
            raise CheckpointError(f"{path}: sha256 {got[:12]}... differs from the manifest's {want[:12]}... "
                                  "(truncated or replaced weights)")


def load_weights(ckpt_dir: str | Path, manifest: CheckpointManifest, name: str = WEIGHTS):
    """The checked state dict of ``name`` (safetensors only); a broken file names itself, and
    model.safetensors saved with another head kind than the manifest's ``head`` is refused."""
    from safetensors import safe_open

    path = Path(ckpt_dir) / name
    if not path.is_file():
        raise CheckpointError(f"{ckpt_dir}: no {name}")
    verify_weights(ckpt_dir, replace(manifest, weights_sha256={k: v for k, v in manifest.weights_sha256.items()
                                                               if k == name}))
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types with no file name
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    saved_head = metadata.get(WEIGHTS_HEAD_KEY)
    if name == WEIGHTS and saved_head is not None and saved_head != manifest.head:
        raise CheckpointError(f"{path}: weights were saved for a {saved_head!r} head, but the manifest's head field "
                              f"says {manifest.head!r} (a swapped or edited manifest)")
    return state


def within_roots(path: str | Path, roots: Iterable[str | Path], what: str) -> Path:
    """``path`` with every symlink resolved (realpath); refused unless under one of ``roots`` (also resolved)."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    resolved = [Path(os.path.realpath(Path(r).expanduser())) for r in roots]
    if not any(real == r or r in real.parents for r in resolved):
        raise OutsideRootsError(f"{what} {path} resolves to {real}, outside the allowed roots "
                                f"{[str(r) for r in resolved]}")
    return real


def _check_tree(top: Path, roots: list[Path], what: str) -> None:
    """Every symlink under ``top`` (files and directories; not followed) must resolve inside ``roots``."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for entry in (*dirnames, *filenames):
            p = Path(dirpath) / entry
            if p.is_symlink():
                within_roots(p, roots, f"{what}: symlink")


def local_backbone_paths(manifest: CheckpointManifest, ckpt_dir: str | Path) -> list[Path]:
    """Every directory the manifest's ``backbone`` may load from on this machine: inside the checkpoint
    (an export) and as given (absolute, or relative to the working directory). None for a tiny preset or
    a hub id (names, not files); a path-like name (absolute, ``~``, ``.``/``..``) counts even when absent."""
    name = manifest.backbone
    path_like = name.startswith(("/", ".", "~")) or ".." in Path(name).parts
    candidates = [Path(name).expanduser()] if Path(name).is_absolute() else [Path(ckpt_dir) / name, Path(name)]
    return [p for p in candidates if path_like or p.exists()]


def check_roots(ckpt_dir: str | Path, manifest: CheckpointManifest, roots: Iterable[str | Path]) -> None:
    """Refuse a checkpoint any of whose files resolves outside ``roots``: the directory itself, every
    symlink inside it (weights, adapter), and a local ``backbone`` with every symlink inside that.
    Raises :class:`OutsideRootsError` naming the manifest field or file."""
    roots = [Path(r) for r in roots]
    ckpt = within_roots(ckpt_dir, roots, "checkpoint")
    _check_tree(ckpt, roots, f"checkpoint {ckpt_dir}")
    for backbone in local_backbone_paths(manifest, ckpt_dir):
        real = within_roots(backbone, roots, f"{Path(ckpt_dir) / MANIFEST}: field backbone {manifest.backbone!r}:")
        _check_tree(real, roots, f"backbone {manifest.backbone}")
