"""A multi-clip audio LM policy with a peft LoRA adapter, shared by the SFT learner, the GRPO
learner and the rollout engines: prompt batches, sampling with log-probs, teacher-forced
log-probs, the adapter in peft's standard layout, and adapter snapshots with digests.

Shapes: N completions (prompts repeated G times), P prompt tokens (left-padded), Lc completion
tokens (right-padded after the end of turn), C clips in all, M mel bins, F mel frames, V vocabulary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from framecall.models.adapters import attach_lora, hf_model  # noqa: F401  (attach_lora: the policy API)
from framecall.models.backbone import QwenAudioBackbone
from framecall.train.grpo.algos import token_logprobs


class WeightSyncError(RuntimeError):
    """An adapter snapshot that is corrupted, of another shape, or of another version."""


@dataclass
class SamplingConfig:
    """How rollouts sample (R1-AQA: temperature 1.0, 256 new tokens)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError("sampling needs temperature > 0, 0 < top_p <= 1 and max_new_tokens >= 1")


@dataclass
class Completions:
    """G sampled completions per prompt, item-major: rows b*G .. b*G+G-1 answer prompt b."""

    ids: torch.Tensor  # [N, Lc] token ids, pad after the end of turn
    mask: torch.Tensor  # [N, Lc] bool, True up to and including the end-of-turn token
    logprobs: torch.Tensor  # [N, Lc] float32 log-probs at temperature 1 under the sampling weights
    texts: list[str]


def adapter_state(backbone: QwenAudioBackbone) -> dict[str, torch.Tensor]:
    """The adapter tensors only (what travels to rollout actors after the first sync)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu", torch.float32).contiguous()
            for k, v in get_peft_model_state_dict(backbone.model).items()}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and float32 bytes: equal digests <=> equal adapters."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def load_adapter_state(backbone: QwenAudioBackbone, state: dict[str, torch.Tensor], version: int) -> str:
    """Load a snapshot into the adapter, refusing one whose names or shapes differ; -> digest held."""
    from peft import set_peft_model_state_dict

    have = adapter_state(backbone)
    missing, extra = sorted(set(have) - set(state)), sorted(set(state) - set(have))
    wrong = sorted(k for k in set(have) & set(state) if tuple(have[k].shape) != tuple(state[k].shape))
    if missing or extra or wrong:
        raise WeightSyncError(f"adapter snapshot of version {version} does not fit this policy: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}, wrong shape {wrong[:3]}")
    set_peft_model_state_dict(backbone.model, state)
    return state_digest(adapter_state(backbone))


def completion_logprobs(backbone: QwenAudioBackbone, prompts: dict[str, torch.Tensor],
                        ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Teacher-forced log-probs of ``ids`` [N, Lc] after the left-padded prompts -> [N, Lc] float32.

    The LM head runs only at the Lc positions that predict a completion token.
    """
    model = hf_model(backbone)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    input_ids = torch.cat([prompts["input_ids"].to(device), ids], 1)  # [N, P + Lc]
    attention = torch.cat([prompts["attention_mask"].to(device), mask.long()], 1)
    dtype = next(model.parameters()).dtype
    hidden = model.model(input_ids=input_ids, attention_mask=attention,
                         input_features=prompts["input_features"].to(device, dtype),
                         feature_attention_mask=prompts["feature_attention_mask"].to(device),
                         return_dict=True).last_hidden_state  # [N, P + Lc, H]
    lc = ids.shape[1]
    logits = model.get_output_embeddings()(hidden[:, -lc - 1:-1])  # [N, Lc, V]
    return token_logprobs(logits, ids) * mask


PLACEHOLDERS = ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>",
                "<|vision_eos|>", "<|im_start|>", "<|endoftext|>")


def placeholder_ids(tokenizer) -> list[int]:
    """Tokens a completion must never hold: a sampled audio placeholder would make the learner's
    teacher-forced pass expect audio features that do not exist."""
    vocab = tokenizer.get_vocab()
    return sorted(vocab[t] for t in PLACEHOLDERS if t in vocab)


@torch.no_grad()
def sample(backbone: QwenAudioBackbone, prompts: dict[str, torch.Tensor], sampling: SamplingConfig,
           seed: int) -> Completions:
    """One sampled completion per prompt row, with the sampling log-probs (temperature 1)."""
    model = hf_model(backbone)
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    torch.manual_seed(seed)
    tok = backbone.tokenizer
    out = model.generate(
        input_ids=prompts["input_ids"].to(device), attention_mask=prompts["attention_mask"].to(device),
        input_features=prompts["input_features"].to(device, dtype),
        feature_attention_mask=prompts["feature_attention_mask"].to(device),
        do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
        max_new_tokens=sampling.max_new_tokens, use_cache=True, output_logits=True,
        return_dict_in_generate=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        suppress_tokens=placeholder_ids(tok))
    ids = out.sequences[:, prompts["input_ids"].shape[1]:]  # [N, Lc]
    ended = (ids == tok.eos_token_id).long()
    # keep tokens up to and including the first end of turn
    mask = (torch.cumsum(ended, 1) - ended) == 0
    logits = torch.stack(out.logits, 1)[:, : ids.shape[1]]  # [N, Lc, V] raw, before temperature
    logprobs = token_logprobs(logits, ids) * mask
    ids = ids.masked_fill(~mask, int(tok.pad_token_id))
    texts = tok.batch_decode([row[m].tolist() for row, m in zip(ids, mask)], skip_special_tokens=True)
    return Completions(ids.cpu(), mask.cpu(), logprobs.float().cpu(), texts)
