"""Typed configs of the frame-head training jobs (``jobs/train_*.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from framecall.audio.augment import AugmentConfig
from framecall.frames.decoding import DECODERS, decoder_serves
from framecall.frames.heads import DEFAULT_BIAS, WEIGHT_INITS
from framecall.metrics import CONVENTIONS, PAIRINGS
from framecall.frames.losses import FRAME_LOSSES, HEAD_OF_LOSS
from framecall.token_answers import TARGET_FORMATS
from framecall.prompts import resolve_system_prompt


_HELDOUT_VOICES = ("en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "+klatt", "+Annie", "+david")
"""= framecall.data.synthetic.HELDOUT_VOICES (tests/data/test_synthetic.py checks they agree)."""


@dataclass
class DataSection:
    """Where the shards are, and the synthetic corpus made when they are missing."""

    data_dir: str = "runs/data/words_all_8k"
    """Shard directory (``--data``). Relative paths resolve against the working directory."""
    make_if_missing: bool = True
    """If ``data_dir`` has no shards, make a synthetic corpus there (tiny default). A corpus a training
    job made records its generator parameters; when they differ from the synth_* fields below it is
    rebuilt in place (with this off: refused, naming the parameters). Corpora from make_data.py or
    converters are used as they are."""
    synth_task: str = "words_all"
    synth_num: int = 8000
    """8,000 items: with 2,000 the tiny model plateaued at 75% acc@20 (BENCHMARKS.md)."""
    synth_seed: int = 0
    synth_max_seconds: float = 5.0
    synth_heldout_voices: list[str] = field(default_factory=lambda: list(_HELDOUT_VOICES))
    """Voice families no train/val/test item uses (framecall.data.synthetic.HELDOUT_VOICES)."""
    synth_heldout_num: int = 400
    """Extra items spoken only by held-out voices, in split ``test_heldout_voice`` (0: none)."""
    synth_target_format: str = "compact"
    """words_all token target: compact [0.21, ...] | json_objects [{"word": .., "start": ..}] (the paper's)."""
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    extra_test_splits: list[str] = field(default_factory=lambda: ["test_heldout_voice"])
    """Further splits the final evaluation reports beside ``test_split``, where the data has them."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Training-split augmentation (framecall.audio.augment), each kind off by default. Waveform
    kinds run in the Ray Data stage and turn the training feature cache off; SpecAugment runs on the
    worker after it."""
    bad_rows: str = "fail"
    """fail | skip (see framecall.data.pipeline)."""
    cache_features: bool = True
    """Materialize the featurized splits once (small corpora); False streams every epoch."""
    featurize: str = "worker"
    """Where the log-mel is computed (framecall.data.pipeline.PipelineConfig.featurize): worker (Ray Data ships
    waveforms, the training worker featurizes each batch at once on its device, every step; measured faster
    here, BENCHMARKS.md "Per-stage profile (issue #19)") | pipeline (per row in the Ray Data tasks; with
    cache_features, once per run)."""
    progress_bars: str = "auto"
    """Ray Data progress bars on the driver: auto (on when stdout is a terminal, off in logs) | on | off."""
    mixture: dict[str, float] = field(default_factory=dict)
    """Multi-task training: shard directory -> sampling weight (replaces ``data_dir``). The run draws
    round(N * w / sum(w)) training rows from each directory once (N = all training rows; a source's
    first rows, a small source repeated) and every epoch reuses them, reshuffled; validation and test
    use every row, reported per task."""

    def __post_init__(self) -> None:
        if self.bad_rows not in ("fail", "skip"):
            raise ValueError(f"data.bad_rows must be 'fail' or 'skip', got {self.bad_rows!r}")
        if self.featurize not in ("pipeline", "worker"):
            raise ValueError(f"data.featurize must be 'pipeline' or 'worker', got {self.featurize!r}")
        if self.progress_bars not in ("auto", "on", "off"):
            raise ValueError(f"data.progress_bars must be auto, on or off, got {self.progress_bars!r}")
        if self.synth_target_format not in TARGET_FORMATS:
            raise ValueError(f"data.synth_target_format must be one of {list(TARGET_FORMATS)}, "
                             f"got {self.synth_target_format!r}")
        for source, weight in self.mixture.items():
            if not weight > 0:
                raise ValueError(f"data.mixture weight of {source!r} must be > 0, got {weight}")

    @property
    def sources(self) -> dict[str, float]:
        """Shard directory -> weight; one source of weight 1 without a mixture."""
        return dict(self.mixture) if self.mixture else {self.data_dir: 1.0}


@dataclass
class ModelSection:
    name: str = "tiny-omni"
    """tiny-omni | tiny-qwen2-audio | tiny-omni-base | tiny-qwen2-audio-base (pretrained bases, issue #21:
    only the backbone is reused, the head is new) | a local checkpoint or base directory | a hub id."""
    subframes: int = 4
    """Sub-frames per 40 ms audio token (4 = 10 ms resolution)."""
    finetune: str = "full"
    """full | lora | head (backbone frozen)."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Projection names; only those inside the language model are wrapped (not the audio tower)."""
    dtype: str = "auto"
    """auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16."""
    gradient_checkpointing: bool = False
    head_bias: float | None = None
    """Initial bias of the frame head; None: -6 for Poisson (exp(-6) ~ 0.0025 per sub-frame), 0 for
    binary. The authors use -6.9 on LibriCount. Recorded in the manifest (head_init_bias)."""
    head_weight_init: str = "scaled_normal"
    """scaled_normal (N(0, (0.1/sqrt(H))^2): scores start at the bias) | torch_default (nn.Linear's
    Kaiming-uniform, the authors' head)."""
    bidirectional_audio: bool = True
    """Positions of one audio block (<|audio_bos|> ... <|audio_eos|>) attend to each other in both
    directions inside the decoder; text stays causal (the authors' setting; recorded in the manifest)."""
    attn_implementation: str = "auto"
    """auto (transformers' choice: SDPA) | eager | sdpa. Flash attention cannot take the audio-block mask."""
    system_prompt: str = "none"
    """A system turn before every prompt: none | a name in framecall.prompts.SYSTEM_PROMPTS (qwen2_audio,
    qwen2_5_omni: the chat templates' defaults, as the authors' code keeps) | the text itself.
    Recorded in the manifest, so Serve and evaluation prompt the same way."""

    def __post_init__(self) -> None:
        if self.head_weight_init not in WEIGHT_INITS:
            raise ValueError(f"model.head_weight_init must be one of {list(WEIGHT_INITS)}, "
                             f"got {self.head_weight_init!r}")
        if self.finetune not in ("full", "lora", "head"):
            raise ValueError(f"model.finetune must be full, lora or head, got {self.finetune!r}")
        resolve_system_prompt(self.system_prompt)  # an unknown special-token marker fails here, not on a worker
        if self.attn_implementation not in ("auto", "eager", "sdpa"):
            raise ValueError(f"model.attn_implementation must be auto, eager or sdpa, got {self.attn_implementation!r}")
        if self.subframes < 1:
            raise ValueError("model.subframes must be >= 1")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"model.dtype must be auto, float32 or bfloat16, got {self.dtype!r}")


OBJECTIVES = ("frame", "tokens", "interpolated")


@dataclass
class TrainSection:
    objective: str = "frame"
    """frame: a frame loss only | tokens: the LM loss on the JSON answer (token baseline) |
    interpolated: L = T + interp_lambda * P (token loss T, frame loss P; the paper's section 4.6)."""
    loss: str = "poisson"
    """The frame loss by name: poisson | poisson_conditional | binary (unused by objective=tokens)."""
    interp_lambda: float = 0.05
    """Weight of the frame loss in the interpolated objective (the seed tried 0.01, 0.05, 1.0)."""
    token_prompt_order: str = "auto"
    """Prompt order of token answers. auto: audio_first (the models' chat order) for the token
    baseline; question_first for the interpolated loss, so one forward pass serves both outputs."""
    loss_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the loss (e.g. pos_weight_scale for binary)."""
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    batch_size: int = 8
    """Per worker (the default 2 workers make a global batch of 16)."""
    max_steps: int = 3500
    grad_clip: float = 1.0
    eval_every: int = 500
    eval_max_items: int = 200
    """Validation items per evaluation (all ranks together)."""
    patience: int = 0
    """Stop after this many evaluations without improvement (0: never stop early)."""
    select_metric: str = "auto"
    """Metric that picks the best checkpoint: auto = acc@20ms for words tasks, acc@40ms otherwise."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"train.objective must be one of {list(OBJECTIVES)}, got {self.objective!r}")
        if self.loss not in FRAME_LOSSES:
            raise ValueError(f"train.loss {self.loss!r} is not a frame loss; valid: {sorted(FRAME_LOSSES)}")
        if not self.interp_lambda >= 0:
            raise ValueError(f"train.interp_lambda must be >= 0, got {self.interp_lambda}")
        if self.token_prompt_order not in ("auto", "audio_first", "question_first"):
            raise ValueError(f"train.token_prompt_order must be auto, audio_first or question_first, "
                             f"got {self.token_prompt_order!r}")
        for name in ("lr", "max_steps", "batch_size", "eval_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be > 0, got {getattr(self, name)}")


@dataclass
class EvalSection:
    decoders: list[str] = field(default_factory=lambda: ["topn_nms", "posterior_mode", "posterior_median",
                                                         "smoothed_posterior_mode", "smoothed_topk"])
    """Decoders to report (those the head cannot read are skipped); "all": every registered one
    (framecall.frames.decoding.DECODER_SPECS) the head supports."""
    default_decoder: str = "topn_nms"
    """Written into the checkpoint manifest; Serve and evaluate use it unless told otherwise."""
    nms_min_separation: int = 3
    """Sub-frames suppressed on each side of a picked peak."""
    figures: int = 3
    """Held-out items drawn (spectrogram + curve + marks) per evaluation."""
    max_new_tokens: int = 256
    """Generation limit of token answers (a JSON list of 30 times is about 120 tokens)."""
    pairings: list[str] = field(default_factory=lambda: ["positional", "hungarian_acc"])
    """How predictions pair with gold events (framecall.metrics): positional | greedy | hungarian_l1 |
    hungarian_acc. The first one selects checkpoints and has the plain metric names; each further one
    is reported beside it as "<pairing>/<metric>" and in its own table columns."""
    conventions: str = "framecall"
    """framecall | paper (the authors': errors rounded to 1 ms, predictions beyond the gold count
    dropped, a missed event charged half the audio length in MAD)."""

    def __post_init__(self) -> None:
        for d in self.decoders:
            if d not in DECODERS and d != "all":
                raise ValueError(f"unknown decoder {d!r} in eval.decoders; valid: {sorted(DECODERS)} or 'all'")
        if self.default_decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.default_decoder!r}; valid: {sorted(DECODERS)}")
        if not self.pairings or len(set(self.pairings)) != len(self.pairings):
            raise ValueError(f"eval.pairings must name at least one pairing, each once; got {self.pairings}")
        for p in self.pairings:
            if p not in PAIRINGS:
                raise ValueError(f"unknown pairing {p!r} in eval.pairings; valid: {list(PAIRINGS)}")
        if self.conventions not in CONVENTIONS:
            raise ValueError(f"eval.conventions must be one of {list(CONVENTIONS)}, got {self.conventions!r}")


@dataclass
class RaySection:
    num_workers: int = 2
    """Ray Train workers. On 2 cores, 2 workers x batch 8 ran 0.168 s/step vs 1 x 16 at 0.23 (BENCHMARKS.md)."""
    cpus_per_worker: float = 1.0
    use_gpu: str = "auto"
    """auto (if the cluster has GPUs Ray detected: an accelerator_type resource) | true | false."""
    gpus_per_worker: float = 1.0
    """GPUs each worker holds when use_gpu (a fraction below 1 shares a GPU between workers)."""
    strategy: str = "ddp"
    """ddp | fsdp."""
    max_failures: int = 2
    """Worker-group restarts Ray Train may do (FailureConfig); each restores the latest complete checkpoint."""
    keep_checkpoints: int = 2
    """Best K checkpoints kept by the selection metric."""
    storage_path: str = ""
    """Where Ray Train writes checkpoints (RunConfig.storage_path): "" = <output>/ray; a path every node
    mounts (/mnt/shared/ckpt) or a URI (s3://bucket/x, gs://bucket/x, file:///x). From Python, fit(...,
    storage_filesystem=<pyarrow filesystem>) makes it a path on that filesystem."""
    address: str | None = None
    """Ray cluster address; None = connect to a running cluster or start a local one."""

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError("ray.num_workers must be >= 1")
        if self.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"ray.strategy must be ddp or fsdp, got {self.strategy!r}")
        if self.use_gpu not in ("auto", "true", "false"):
            raise ValueError(f"ray.use_gpu must be auto, true or false, got {self.use_gpu!r}")
        from framecall.runtime import check_resources

        check_resources("ray (cpus_per_worker, gpus_per_worker)", self.cpus_per_worker, self.gpus_per_worker)


@dataclass
class MlflowSection:
    tracking_uri: str | None = None
    """None: sqlite at <output>/mlflow.db (absolute). Any MLflow URI otherwise."""
    experiment: str = "framecall"
    run_name: str | None = None
    register: bool = True
    """Register the best checkpoint in the model registry (loadable as models:/name/version)."""
    registered_model_name: str | None = None
    """None: framecall-<objective or loss>, e.g. framecall-poisson, framecall-tokens."""
    alias: str | None = "latest-good"
    """Alias moved to each newly registered version (it registers only after training and the test
    evaluation finished): ``models:/name@latest-good``. None: no alias."""
    system_metrics: bool = True
    """Log the driver node's CPU, memory, disk, network (and NVIDIA GPU) use as system/* metrics."""
    system_metrics_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.alias is not None and (self.alias == "latest" or self.alias.startswith("v")
                                       and self.alias[1:].isdigit() or not self.alias):
            raise ValueError(f"mlflow.alias {self.alias!r} is reserved by MLflow (latest, v<number>) or empty")
        if self.system_metrics_interval_s <= 0:
            raise ValueError(f"mlflow.system_metrics_interval_s must be > 0, got {self.system_metrics_interval_s}")


@dataclass
class TrainJobConfig:
    """Everything a frame-head training run needs. YAML keys mirror the sections."""

    output: str = "runs/train_poisson"
    """Where checkpoints, Ray results, the MLflow store and the final table go (``--output``)."""
    resume: bool = False
    """Continue from the latest checkpoint in ``output`` (same MLflow run, right global step)."""
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    ray: RaySection = field(default_factory=RaySection)
    mlflow: MlflowSection = field(default_factory=MlflowSection)

    @property
    def head(self) -> str:
        return "tokens" if self.train.objective == "tokens" else HEAD_OF_LOSS[self.train.loss]

    @property
    def token_output(self) -> bool:
        return self.train.objective in ("tokens", "interpolated")

    @property
    def token_prompt_order(self) -> str:
        if self.train.token_prompt_order != "auto":
            return self.train.token_prompt_order
        return "question_first" if self.train.objective == "interpolated" else "audio_first"

    @property
    def head_init_bias(self) -> float | None:
        """The frame head's initial bias as built (model.head_bias or the head's default); None: no frame head."""
        if self.head == "tokens":
            return None
        return self.model.head_bias if self.model.head_bias is not None else DEFAULT_BIAS[self.head]

    @property
    def primary_output(self) -> str:
        """The output that selects checkpoints and that Serve uses: a decoder name, or "tokens"."""
        return "tokens" if self.head == "tokens" else self.eval.default_decoder

    @property
    def loss_name(self) -> str:
        """As written in the manifest: tokens, poisson, ..., interpolated+poisson."""
        return {"frame": self.train.loss, "tokens": "tokens"}.get(self.train.objective,
                                                                  f"interpolated+{self.train.loss}")

    def __post_init__(self) -> None:
        if self.train.objective == "tokens" and self.model.finetune == "head":
            raise ValueError("model.finetune=head trains nothing of a token model; use full or lora")
        if (self.head != "tokens" and self.eval.default_decoder in DECODERS
                and not decoder_serves(self.eval.default_decoder, self.head)):
            raise ValueError(f"eval.default_decoder {self.eval.default_decoder!r} needs a Poisson head; "
                             "use topk or topn_nms with the binary loss")
