"""Bidirectional attention among audio positions inside a causal audio-LM decoder.

With it on, every position of one audio block (``<|audio_bos|>`` ... ``<|audio_eos|>``, both
included) sees every other position of that block; everything else stays causal, and padding
stays masked. The authors' code (inkitori/taudio) patches the causal-mask builder, which under
SDPA returns *no mask* for an unpadded batch (``is_causal`` is used instead), so their patch is a
silent no-op there. Here the decoder is handed the finished masks instead:

- a forward pre-hook on the multimodal model (``model.model``) reads ``input_ids`` and records
  the block of every position, [B, L] (-1: not audio);
- a forward pre-hook on its language model replaces the 2-D padding mask by the mask mapping the
  decoder layers take (``{"full_attention": ..., "sliding_attention": ...}``), built by
  transformers' own ``create_causal_mask`` with ``block_sequence_ids`` (a block overlay, which
  also turns off the SDPA ``is_causal`` shortcut). The decoder uses a dict mask as given.

That mask is a boolean tensor under SDPA and an additive float tensor under eager attention,
so both implementations honour it. Flash attention takes only padding masks, so it is refused.
With a KV cache the audio is in the prompt (prefill); decoding steps hold no audio tokens and
take the ordinary causal path, attending to the bidirectionally computed cache.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa")
"""What ``model.attn_implementation`` may name; ``auto`` lets transformers choose (SDPA here)."""
MASKABLE_IMPLEMENTATIONS = ("eager", "sdpa")
"""Implementations whose masks can carry the audio-block pattern."""


class BidirectionalAudioError(ValueError):
    """Bidirectional audio attention cannot be applied to this model or these inputs."""


def audio_block_ids(input_ids: torch.Tensor, bos_id: int, eos_id: int) -> torch.Tensor:
    """Audio block of each position: input_ids [B, L] -> [B, L] long, k for the k-th
    ``bos ... eos`` span of the row (markers included), -1 elsewhere.

    A ``bos`` whose ``eos`` is not in ``input_ids`` (or a stray ``eos``) opens no block: such
    positions stay causal rather than letting text see ahead.
    """
    is_bos = input_ids == bos_id
    is_eos = input_ids == eos_id
    opened = torch.cumsum(is_bos.long(), 1)  # bos counted from its own position on
    closed = torch.cumsum(is_eos.long(), 1) - is_eos.long()  # eos counted after its position
    block = opened - 1
    inside = (opened > closed) & (block < is_eos.sum(1, keepdim=True))
    return torch.where(inside, block, torch.full_like(block, -1))


def check_implementation(config: Any, where: str) -> str:
    """The attention implementation ``config`` uses; refuse one that cannot take the block mask."""
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in MASKABLE_IMPLEMENTATIONS:
        raise BidirectionalAudioError(
            f"{where}: bidirectional_audio needs attention that takes an explicit mask "
            f"({' or '.join(MASKABLE_IMPLEMENTATIONS)}), but the model uses {impl!r}; set "
            "model.attn_implementation=sdpa (or eager), or model.bidirectional_audio=false")
    return impl


class AudioBlockAttention:
    """Bidirectional audio blocks on a loaded Qwen audio LM; :meth:`enable` / :meth:`disable`.

    ``multimodal``: the module that receives ``input_ids`` (Qwen2_5OmniThinkerModel,
    Qwen2AudioModel); ``language_model``: its text decoder, which builds the masks.
    """

    def __init__(self, multimodal: nn.Module, language_model: nn.Module, bos_id: int, eos_id: int) -> None:
        self.multimodal = multimodal
        self.language_model = language_model
        self.bos_id, self.eos_id = bos_id, eos_id
        self._handles: list[Any] = []
        self._pending: torch.Tensor | None = None  # [B, L] block ids of the call in flight

    @property
    def enabled(self) -> bool:
        return bool(self._handles)

    def enable(self) -> None:
        if self.enabled:
            return
        check_implementation(self.language_model.config, type(self.language_model).__name__)
        self._handles = [
            self.multimodal.register_forward_pre_hook(self._capture_blocks, with_kwargs=True),
            self.language_model.register_forward_pre_hook(self._swap_mask, with_kwargs=True),
        ]

    def disable(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._pending = [], None

    def _capture_blocks(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            if kwargs.get("inputs_embeds") is not None:
                raise BidirectionalAudioError(
                    f"{type(module).__name__} called with inputs_embeds only: bidirectional_audio needs "
                    "input_ids to find the audio blocks")
            self._pending = None
            return
        blocks = audio_block_ids(input_ids, self.bos_id, self.eos_id)
        self._pending = blocks if bool((blocks >= 0).any()) else None

    def _swap_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        blocks, self._pending = self._pending, None  # consumed: one language-model call per capture
        if blocks is None:
            return None  # no audio in this chunk (a decoding step): the causal path is right
        attention_mask = kwargs.get("attention_mask")
        if attention_mask is not None and (isinstance(attention_mask, dict) or attention_mask.ndim != 2):
            raise BidirectionalAudioError(
                f"{type(module).__name__} got a prepared {type(attention_mask).__name__} attention mask "
                "(a static/compiled cache?): bidirectional_audio needs the 2-D padding mask")
        if blocks.shape[1] != kwargs["inputs_embeds"].shape[1]:
            raise BidirectionalAudioError(
                f"{type(module).__name__}: {blocks.shape[1]} input ids but {kwargs['inputs_embeds'].shape[1]} "
                "embeddings (unexpanded audio placeholders?): bidirectional_audio needs one <|AUDIO|> per audio token")
        kwargs["attention_mask"] = self.block_masks(module, kwargs, blocks)
        return args, kwargs

    def block_masks(self, module: nn.Module, kwargs: dict, blocks: torch.Tensor) -> dict[str, Any]:
        """The decoder's mask mapping with the audio blocks open. blocks [B, q_len] (this chunk)."""
        from transformers.masking_utils import blockwise_overlay, create_causal_mask, create_sliding_window_causal_mask

        config = module.config
        check_implementation(config, type(module).__name__)
        embeds = kwargs["inputs_embeds"]  # [B, q_len, H]
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        # mask functions index positions absolutely: earlier (cached) positions are text here
        blocks = nn.functional.pad(blocks.to(embeds.device), (past, 0), value=-1)  # [B, past + q_len]
        position_ids = kwargs.get("position_ids")
        mask_kwargs = dict(config=config, inputs_embeds=embeds, attention_mask=kwargs.get("attention_mask"),
                           past_key_values=cache,
                           position_ids=position_ids if position_ids is not None and position_ids.ndim == 2 else None)
        masks: dict[str, Any] = {"full_attention": create_causal_mask(**mask_kwargs, block_sequence_ids=blocks)}
        if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
            masks["sliding_attention"] = create_sliding_window_causal_mask(
                **mask_kwargs, or_mask_function=blockwise_overlay(blocks))
        return masks
