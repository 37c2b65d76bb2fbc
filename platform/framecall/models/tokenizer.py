"""A small byte-level BPE tokenizer built offline with ``tokenizers``, Qwen special tokens.

Used by the tiny presets only: real checkpoints bring their own tokenizer. Trained on
:func:`framecall.prompts.tokenizer_training_text` (the synthetic vocabulary, the question
templates, digits and JSON punctuation), so prompts, transcripts and the token baseline's JSON
targets tokenize compactly. Deterministic for a given input.

The chat markers are special tokens (``skip_special_tokens=True`` drops them when decoding).
The answer tags ``<answer>``/``</answer>`` are one token each but ordinary text, as in the real
Qwen tokenizers: decoding keeps them, so a format reward can see them.
"""

from __future__ import annotations

from pathlib import Path

from framecall.prompts import ANSWER_TAGS, tokenizer_training_text

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>",
]
TEXT_TOKENS = list(ANSWER_TAGS)
"""Single tokens that are text, not special (kept by ``skip_special_tokens``)."""


def fingerprint(vocab_size: int = 1024) -> str:
    """Short digest of everything :func:`build_tokenizer` depends on (part of the tiny models' cache key)."""
    import hashlib
    import json

    spec = {"special": SPECIAL_TOKENS, "text": TEXT_TOKENS, "vocab_size": vocab_size,
            "corpus": tokenizer_training_text()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]


def build_tokenizer(vocab_size: int = 1024):
    """-> transformers.PreTrainedTokenizerFast with Qwen-style chat special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + TEXT_TOKENS,  # reserves their ids (10, 11) before the merges
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_training_text(), trainer=trainer)
    # the trainer adds every reserved token as special: re-add the answer tags as text (same ids)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TEXT_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )


def save_tokenizer(path: Path, vocab_size: int = 1024):
    tok = build_tokenizer(vocab_size)
    tok.save_pretrained(str(path))
    return tok
