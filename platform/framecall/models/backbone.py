"""Backbone adapters: an audio LM's final-layer states at its audio tokens, [B, T_tok, H].

One adapter serves both Qwen architectures (Qwen2.5-Omni thinker, Qwen2-Audio): both
expand one ``<|AUDIO|>`` placeholder per 40 ms audio token and scatter the audio
encoder's outputs into those positions. The adapter owns

- feature extraction parameters (Qwen2-Audio: exactly 3000 mel frames; Omni: any length),
- the prompt (question before the audio for frame heads, so the causal decoder's audio
  states see it; after it for text answers), recorded as ``prompt_order``,
- the forward pass and the gather of audio-token states with their mask,
- the attention pattern: causal, or bidirectional inside each audio block
  (``bidirectional_audio``, :mod:`framecall.models.attention`), carried by the object so every
  consumer (training, evaluation, Serve, batch prediction, generation) gets the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from framecall.audio.features import FeatureParams
from framecall.models.attention import ATTN_IMPLEMENTATIONS, AudioBlockAttention
from framecall.models.spec import qwen_audio_tokens
from framecall.models.tiny import BASE_PRESETS, TINY_PRESETS, ensure_base, ensure_tiny
from framecall.prompts import ANSWER_HINT, chat_turn, multi_clip_prompt

PromptOrder = Literal["question_first", "audio_first"]
FRAME_S = 0.04  # one audio token per 40 ms in both architectures


class BackboneError(ValueError):
    """A model name/path that cannot be loaded as a supported backbone."""


def check_safetensors_dir(path: Path) -> None:
    """A local checkpoint loads safetensors only: refuse one without ``*.safetensors`` weights, and
    one whose safetensors header is unreadable or does not cover the file (truncated), naming the file.
    Opening reads the header only, so this costs nothing next to the load."""
    from safetensors import safe_open

    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise BackboneError(f"model path {path} has no *.safetensors weights (framecall loads safetensors only; "
                            "re-save the model with save_pretrained(safe_serialization=True))")
    for w in weights:
        try:
            with safe_open(str(w), framework="pt") as f:
                f.keys()
        except Exception as e:  # safetensors' own error types carry no file name
            raise BackboneError(f"{w}: unreadable safetensors file ({e})") from None


def resolve_model_path(model: str) -> str:
    """``tiny-omni`` / ``tiny-qwen2-audio`` -> the cached tiny checkpoint; ``tiny-omni-base`` /
    ``tiny-qwen2-audio-base`` -> the pretrained base's backbone (shipped, cached or built); a base checkpoint
    directory (jobs/pretrain_base.py's output, or any standalone export) -> its ``backbone/``; else a path
    (symlinks resolved, safetensors checked) or a hub id (loaded with ``use_safetensors=True``)."""
    if model in TINY_PRESETS:
        return str(ensure_tiny(model))
    if model in BASE_PRESETS:
        return str(ensure_base(model))
    if (Path(model) / "backbone" / "config.json").is_file() and not (Path(model) / "config.json").exists():
        model = str(Path(model) / "backbone")
    if Path(model).exists():
        if not (Path(model) / "config.json").is_file():
            raise BackboneError(f"model path {model} has no config.json (not a Hugging Face checkpoint)")
        check_safetensors_dir(Path(model).resolve())
        return str(Path(model).resolve())
    if model.startswith(("/", ".", "~")) or model.count("/") != 1:
        raise BackboneError(
            f"unknown model {model!r}: use one of {[*TINY_PRESETS, *BASE_PRESETS]}, a local checkpoint directory, "
            "or a hub id like Qwen/Qwen2-Audio-7B-Instruct (needs network)"
        )
    return model  # a hub id: from_pretrained fetches it where the machine can reach a hub


SUPPORTED_MODEL_TYPES = ("qwen2_5_omni_thinker", "qwen2_audio")


def feature_params_for(model_type: str, num_mel_bins: int) -> FeatureParams:
    """Qwen2-Audio's encoder needs exactly 30 s (3000 mel frames); the Omni thinker does not."""
    return FeatureParams(num_mel_bins=num_mel_bins, pad_to_seconds=30.0 if model_type == "qwen2_audio" else None)


@dataclass(frozen=True)
class BackboneSpec:
    """What the data pipeline and the manifest need, read from config.json alone."""

    model_type: str  # "qwen2_5_omni" | "qwen2_audio"
    feature_params: FeatureParams
    frame_s: float = FRAME_S


def _load_config(path: str):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    if config.model_type == "qwen2_5_omni":  # a full Omni checkpoint: its thinker
        config = config.thinker_config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise BackboneError(f"{path}: model_type {config.model_type!r} is not supported; "
                            f"supported: {list(SUPPORTED_MODEL_TYPES)}")
    return config


def backbone_spec(model: str) -> BackboneSpec:
    """Feature parameters and frame rate of ``model`` without loading its weights."""
    config = _load_config(resolve_model_path(model))
    kind = "qwen2_audio" if config.model_type == "qwen2_audio" else "qwen2_5_omni"
    return BackboneSpec(kind, feature_params_for(kind, int(config.audio_config.num_mel_bins)))


@dataclass
class AudioBatchInputs:
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    input_features: torch.Tensor  # [B, M, F]
    feature_attention_mask: torch.Tensor  # [B, F]
    labels: torch.Tensor | None = None  # [B, L], -100 outside the answer (teacher forcing only)


class QwenAudioBackbone(nn.Module):
    """Wraps a loaded Qwen2.5-Omni thinker or Qwen2-Audio model.

    ``forward(batch)`` takes the collated batch of :class:`framecall.data.collate.FrameCollator`
    (features [B, M, F], feature_mask [B, F], token_mask [B, T_tok], prompts) and returns
    ``(states [B, T_tok, H], token_mask [B, T_tok])``.
    """

    def __init__(self, model: nn.Module, tokenizer, model_type: str, source: str,
                 prompt_order: PromptOrder = "question_first", bidirectional_audio: bool = False) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.model_type = model_type
        self.source = source
        self.prompt_order = prompt_order
        self.system_prompt: str | None = None
        """Text of a system turn before each prompt (``model.system_prompt``, resolved); None: none."""
        text_cfg = model.config.get_text_config()
        self.hidden_size = int(text_cfg.hidden_size)
        self.audio_token_id = int(getattr(model.config, "audio_token_id", None)
                                  or getattr(model.config, "audio_token_index"))
        self.frame_s = FRAME_S
        self.feature_params = feature_params_for(model_type, int(model.config.audio_config.num_mel_bins))
        # hooks live on the HF modules themselves, so they survive peft wrapping and merging
        self._audio_attention = AudioBlockAttention(model.model, model.model.language_model,
                                                    *self._audio_marker_ids(tokenizer, source))
        self.set_bidirectional_audio(bidirectional_audio)

    @staticmethod
    def _audio_marker_ids(tokenizer, source: str) -> tuple[int, int]:
        ids = tokenizer.convert_tokens_to_ids(["<|audio_bos|>", "<|audio_eos|>"])
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise BackboneError(f"{source}: the tokenizer has no <|audio_bos|>/<|audio_eos|> tokens")
        return int(ids[0]), int(ids[1])

    @property
    def bidirectional_audio(self) -> bool:
        """Whether positions of one audio block attend to each other in both directions."""
        return self._audio_attention.enabled

    def set_bidirectional_audio(self, on: bool) -> None:
        """Turn bidirectional attention among audio positions on or off (refused under an
        attention implementation that cannot take the mask, e.g. flash attention)."""
        if on:
            self._audio_attention.enable()
        else:
            self._audio_attention.disable()

    @property
    def attn_implementation(self) -> str:
        return str(self.model.config.get_text_config()._attn_implementation)

    @property
    def inner(self) -> nn.Module:
        """The decoder stack without the LM head (peft injects LoRA layers in place)."""
        return self.model.model

    @property
    def max_audio_seconds(self) -> float | None:
        return 30.0 if self.model_type == "qwen2_audio" else None

    def tokens_for_frames(self, num_mel_frames: int) -> int:
        return qwen_audio_tokens(num_mel_frames)

    def prompt_text(self, question: str, num_audio_tokens: int, order: PromptOrder | None = None) -> str:
        audio = "<|audio_bos|>" + "<|AUDIO|>" * num_audio_tokens + "<|audio_eos|>"
        order = order or self.prompt_order
        body = f"{question}{audio}" if order == "question_first" else f"{audio}{question}"
        return chat_turn(body, self.system_prompt)

    def multi_prompt_text(self, question: str, tokens_per_clip: list[int], order: PromptOrder = "audio_first",
                          answer_hint: str = ANSWER_HINT) -> str:
        """Several clips in one turn, Qwen2-Audio's interleaved form (the Omni thinker takes the
        same placeholders): "Audio 1: <audio> Audio 2: <audio> ... question" (layout and answer
        hint: :func:`framecall.prompts.multi_clip_prompt`)."""
        audios = ["<|audio_bos|>" + "<|AUDIO|>" * n + "<|audio_eos|>" for n in tokens_per_clip]
        body = multi_clip_prompt(question, audios, order, answer_hint)
        return chat_turn(body, self.system_prompt)

    def multi_inputs(self, questions: list[str], clip_features: list[list[torch.Tensor]],
                     order: PromptOrder = "audio_first") -> dict[str, torch.Tensor]:
        """Left-padded prompts about several clips per item. clip_features[b][k]: log-mel [M, F_k].

        -> input_ids / attention_mask [B, P], input_features [C, M, F_max] and feature_attention_mask
        [C, F_max] with one row per clip (C = all clips of the batch, in order): the model fills the
        placeholder runs in order, so the prompt and the rows must agree.
        """
        flat = [f for clips in clip_features for f in clips]
        f_max = max(f.shape[-1] for f in flat)
        if self.feature_params.pad_to_seconds is not None:
            f_max = self.feature_params.num_frames(0)
            if any(f.shape[-1] > f_max for f in flat):
                raise ValueError(f"a clip is longer than {self.feature_params.pad_to_seconds} s for {self.model_type}")
        feats = torch.zeros(len(flat), flat[0].shape[0], f_max)
        fmask = torch.zeros(len(flat), f_max, dtype=torch.long)
        for i, f in enumerate(flat):
            feats[i, :, : f.shape[-1]] = f
            fmask[i, : f.shape[-1]] = 1
        texts = [self.multi_prompt_text(q, [self.tokens_for_frames(f.shape[-1]) for f in clips], order)
                 for q, clips in zip(questions, clip_features)]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "input_features": feats,
                "feature_attention_mask": fmask}

    @torch.no_grad()
    def generate_multi(self, questions: list[str], clip_features: list[list[torch.Tensor]],
                       order: PromptOrder = "audio_first", max_new_tokens: int = 64) -> list[str]:
        """Greedy answers about several clips per item (see :meth:`multi_inputs`)."""
        device, dtype = self._device_dtype()
        enc = self.multi_inputs(questions, clip_features, order)
        out = self.model.generate(
            input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
            input_features=enc["input_features"].to(device, dtype),
            feature_attention_mask=enc["feature_attention_mask"].to(device),
            max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
            eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def build_inputs(self, prompts: list[str], features: torch.Tensor, feature_mask: torch.Tensor,
                     order: PromptOrder | None = None, targets: list[str] | None = None,
                     padding_side: str = "right") -> AudioBatchInputs:
        """Tokenise prompts with one placeholder per audio token.

        ``targets`` (teacher forcing): each row's answer text is appended after the prompt and
        closed by ``<|im_end|>``; ``labels`` [B, L] then hold its token ids, -100 elsewhere.
        Generation uses ``padding_side="left"``.
        """
        lengths = feature_mask.sum(1).tolist()
        texts = [self.prompt_text(q, self.tokens_for_frames(int(n)), order) for q, n in zip(prompts, lengths)]
        labels = None
        if targets is None:
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side=padding_side)
            input_ids, attention = enc["input_ids"], enc["attention_mask"]
        else:
            prompt_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            target_ids = self.tokenizer([t + "<|im_end|>" for t in targets], add_special_tokens=False)["input_ids"]
            rows = [p + t for p, t in zip(prompt_ids, target_ids)]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), int(self.tokenizer.pad_token_id))
            attention = torch.zeros(len(rows), width, dtype=torch.long)
            labels = torch.full((len(rows), width), -100)
            for b, (p, t) in enumerate(zip(prompt_ids, target_ids)):
                input_ids[b, : len(p) + len(t)] = torch.tensor(p + t)
                attention[b, : len(p) + len(t)] = 1
                labels[b, len(p) : len(p) + len(t)] = torch.tensor(t)
        feats, fmask = features, feature_mask
        if self.feature_params.pad_to_seconds is not None:  # Qwen2-Audio: exactly 3000 frames
            target = self.feature_params.num_frames(0)
            if feats.shape[-1] > target:
                raise ValueError(f"audio longer than {self.feature_params.pad_to_seconds} s for {self.model_type}")
            feats = nn.functional.pad(feats, (0, target - feats.shape[-1]))
            fmask = nn.functional.pad(fmask, (0, target - fmask.shape[-1]))
        return AudioBatchInputs(input_ids, attention, feats, fmask.long(), labels)

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.model.parameters())
        return p.device, p.dtype

    def encode(self, batch: dict, order: PromptOrder | None = None, targets: list[str] | None = None,
               padding_side: str = "right") -> tuple[torch.Tensor, AudioBatchInputs]:
        """Final-layer states of every position, [B, L, H], and the inputs that made them."""
        device, dtype = self._device_dtype()
        inputs = self.build_inputs(batch["prompts"], batch["features"], batch["feature_mask"], order, targets,
                                   padding_side)
        out = self.inner(
            input_ids=inputs.input_ids.to(device),
            attention_mask=inputs.attention_mask.to(device),
            input_features=inputs.input_features.to(device, dtype),
            feature_attention_mask=inputs.feature_attention_mask.to(device),
            return_dict=True,
        )
        return out.last_hidden_state, inputs

    def audio_states(self, hidden: torch.Tensor, input_ids: torch.Tensor,
                     t_max: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather the audio-token states: hidden [B, L, H] -> ([B, t_max, H], mask [B, t_max])."""
        is_audio = input_ids.to(hidden.device) == self.audio_token_id  # [B, L]
        n_tok = is_audio.sum(1)
        if int(n_tok.max()) != t_max:
            raise RuntimeError(f"prompt has {int(n_tok.max())} audio tokens, collate expected {t_max}")
        # position of the k-th audio token of each row; rows with fewer tokens are masked
        order_idx = torch.cumsum(is_audio.long(), 1) - 1
        states = hidden.new_zeros(hidden.shape[0], t_max, hidden.shape[-1])
        rows, cols = is_audio.nonzero(as_tuple=True)
        states[rows, order_idx[rows, cols]] = hidden[rows, cols]
        token_mask = torch.arange(t_max, device=hidden.device)[None, :] < n_tok[:, None]
        return states, token_mask

    def token_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the answer tokens. hidden [B, L, H], labels [B, L].

        The LM head runs only at the positions that predict an answer token (cheap for big vocabularies).
        """
        labels = labels.to(hidden.device)
        predict = labels[:, 1:] != -100  # [B, L-1]: position i predicts token i+1
        logits = self.model.get_output_embeddings()(hidden[:, :-1][predict])  # [N, V]
        return nn.functional.cross_entropy(logits.float(), labels[:, 1:][predict])

    def forward(self, batch: dict, order: PromptOrder | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, inputs = self.encode(batch, order)
        return self.audio_states(hidden, inputs.input_ids, int(batch["token_mask"].shape[1]))

    @torch.no_grad()
    def generate(self, batch: dict, order: PromptOrder | None = None, max_new_tokens: int = 256,
                 min_new_tokens: int = 0) -> list[str]:
        """Greedy answers with the KV cache, one string per row (special tokens removed)."""
        device, dtype = self._device_dtype()
        inputs = self.build_inputs(batch["prompts"], batch["features"], batch["feature_mask"], order,
                                   padding_side="left")
        out = self.model.generate(
            input_ids=inputs.input_ids.to(device), attention_mask=inputs.attention_mask.to(device),
            input_features=inputs.input_features.to(device, dtype),
            feature_attention_mask=inputs.feature_attention_mask.to(device),
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False, use_cache=True,
            eos_token_id=None if min_new_tokens >= max_new_tokens else self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return self.tokenizer.batch_decode(out[:, inputs.input_ids.shape[1]:], skip_special_tokens=True)


def load_backbone(model: str, dtype: torch.dtype | None = None, prompt_order: PromptOrder = "question_first",
                  bidirectional_audio: bool = False, attn_implementation: str = "auto") -> QwenAudioBackbone:
    """Load ``model`` (a tiny preset, a local checkpoint or a hub id) through from_pretrained.

    ``attn_implementation``: auto (transformers' choice: SDPA here) | eager | sdpa;
    ``bidirectional_audio``: see :class:`framecall.models.attention.AudioBlockAttention`.
    """
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise BackboneError(f"attn_implementation must be one of {list(ATTN_IMPLEMENTATIONS)}, "
                            f"got {attn_implementation!r}")
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration, \
        Qwen2AudioForConditionalGeneration

    path = resolve_model_path(model)
    config = _load_config(path)
    classes: dict[str, Any] = {"qwen2_5_omni_thinker": Qwen2_5OmniThinkerForConditionalGeneration,
               "qwen2_audio": Qwen2AudioForConditionalGeneration}
    impl = None if attn_implementation == "auto" else attn_implementation
    lm = classes[config.model_type].from_pretrained(path, config=config, use_safetensors=True, dtype=dtype or torch.float32,
                                                    attn_implementation=impl)
    tokenizer = AutoTokenizer.from_pretrained(path)
    kind = "qwen2_audio" if config.model_type == "qwen2_audio" else "qwen2_5_omni"
    return QwenAudioBackbone(lm, tokenizer, kind, source=model, prompt_order=prompt_order,
                             bidirectional_audio=bidirectional_audio)
