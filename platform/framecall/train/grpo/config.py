"""Typed configs of the multi-audio jobs: LoRA SFT (``jobs/train_sft.py``) and GRPO (``jobs/train_grpo.py``).

Defaults are the tiny recipe that runs on 2 CPU cores in minutes; ``jobs/configs/grpo_7b.yaml``
holds the published GPU settings (R1-AQA / NeMo-RL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from framecall.train.config import MlflowSection, RaySection


@dataclass
class MultiDataSection:
    data_dir: str = "runs/data/polyaudio_train"
    """PolyAudio shards (jobs/make_polyaudio.py); made synthetically when missing and make_if_missing."""
    split: str = "train"
    """train (SFT) | preference (GRPO) | bench."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """poly_<task> -> weight within the directory; empty: every row once per epoch."""
    make_if_missing: bool = True
    synth_per_task: int = 8
    synth_tasks: list[str] = field(default_factory=lambda: ["counting", "comparison", "odd_one_out"])
    """Tasks made when the directory is missing (PolyAudio generator names)."""

    def __post_init__(self) -> None:
        if any(w <= 0 for w in self.task_weights.values()):
            raise ValueError("data.task_weights must be positive")


@dataclass
class LoraSection:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                        "down_proj"])
    """Language-model projections that get adapters. All linear layers: on the tiny random base,
    attention-only adapters did not learn the answer format in 60 steps (all-linear did)."""
    modules_to_save: list[str] = field(default_factory=lambda: ["lm_head"])
    """Modules trained whole beside the adapters (peft ``modules_to_save``). The tiny default trains the
    LM head: a random base's head keeps every next-token distribution near uniform, so sampled
    completions (GRPO) stayed off-format after SFT (format 0/8 at temperature 1) until it trained
    (30/32). Real checkpoints: [] (a 7B LM head is ~0.5 B parameters)."""
    dtype: str = "auto"
    """auto (bf16 on a CUDA device that supports it, else fp32) | float32 | bfloat16."""


@dataclass
class SFTSection:
    lr: float = 5e-3
    """The tiny default (a random base learns slowly through adapters); GPU recipes use ~1e-4."""
    max_steps: int = 30
    batch_size: int = 4
    """Items per worker per step."""
    warmup_steps: int = 2
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    save_every: int = 10
    seed: int = 0


@dataclass
class SFTJobConfig:
    base: str = "tiny-omni"
    """Backbone to adapt: tiny-omni | tiny-qwen2-audio | tiny-omni-base | tiny-qwen2-audio-base (pretrained
    bases) | a local model path."""
    output: str = "runs/train_sft"
    resume: bool = False
    data: MultiDataSection = field(default_factory=MultiDataSection)
    lora: LoraSection = field(default_factory=LoraSection)
    train: SFTSection = field(default_factory=SFTSection)
    ray: RaySection = field(default_factory=RaySection)
    mlflow: MlflowSection = field(default_factory=MlflowSection)


@dataclass
class GRPOSection:
    num_generations: int = 4
    """G completions per prompt (R1-AQA and NeMo-RL: 8)."""
    prompts_per_step: int = 2
    """Prompts per worker per step."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 24
    lr: float = 1e-3
    """The tiny default; real runs use 1e-6 (both recipes)."""
    clip_eps: float = 0.2
    kl_coef: float = 0.04
    """R1-AQA: 0.04; NeMo-RL: 0.01."""
    kl_estimator: str = "k3"
    advantage: str = "grpo"
    loss_agg: str = "token-mean"
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 0.8, "format": 0.2})
    """Reward name -> weight (NeMo-RL: 0.8 exact + 0.2 format)."""
    max_steps: int = 20
    save_every: int = 10
    grad_clip: float = 1.0
    seed: int = 0
    sync_timeout_s: float = 300.0
    """A weight sync or generation that takes longer is an error, never a silent stale step."""

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError(f"grpo.num_generations must be >= 2 (group statistics), got {self.num_generations}")
        if self.prompts_per_step < 1 or self.max_steps < 1:
            raise ValueError("grpo.prompts_per_step and grpo.max_steps must be >= 1")


@dataclass
class RolloutSection:
    num_actors: int = 2
    """Rollout actors, separate from the learner workers."""
    cpus_per_actor: float = 0.5
    gpus_per_actor: float = 0.0
    """Fractional GPUs allowed; 0 on CPU clusters."""
    max_restarts: int = 1
    """Ray restarts a dead actor this often; a restarted actor is re-synced and the step retried once."""

    def __post_init__(self) -> None:
        if self.num_actors < 1:
            raise ValueError(f"rollout.num_actors must be >= 1, got {self.num_actors}")
        from framecall.runtime import check_resources

        check_resources("rollout (cpus_per_actor, gpus_per_actor)", self.cpus_per_actor, self.gpus_per_actor)


@dataclass
class PreferenceDataSection(MultiDataSection):
    """GRPO's data: PolyAudio's preference split (a section's defaults must live on its class:
    a YAML file or override that sets one key rebuilds the section from them)."""

    data_dir: str = "runs/data/polyaudio_preference"
    split: str = "preference"


@dataclass
class LearnerRaySection(RaySection):
    num_workers: int = 1
    """GRPO learner workers (Ray Train); the rollout actors come on top."""


@dataclass
class GRPOJobConfig:
    policy: str = "runs/train_sft/best"
    """The SFT checkpoint (its adapter is merged into the base once), or a backbone (GRPO only)."""
    output: str = "runs/train_grpo"
    resume: bool = False
    data: PreferenceDataSection = field(default_factory=PreferenceDataSection)
    lora: LoraSection = field(default_factory=LoraSection)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    rollout: RolloutSection = field(default_factory=RolloutSection)
    ray: LearnerRaySection = field(default_factory=LearnerRaySection)
    mlflow: MlflowSection = field(default_factory=MlflowSection)
