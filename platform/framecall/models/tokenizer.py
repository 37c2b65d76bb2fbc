"""A small byte-level BPE tokenizer built offline with ``tokenizers``, Qwen special tokens.

Used by the tiny presets only: real checkpoints bring their own tokenizer. Trained on
the synthetic vocabulary, digits and JSON punctuation, so prompts, transcripts and the
token baseline's JSON targets tokenize compactly. Deterministic for a given input.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>",
    "<answer>", "</answer>",
]


def _training_text() -> list[str]:
    from framecall.audio.events import EVENT_GENERATORS
    from framecall.data.synthetic import VOCABULARY, ordinal

    lines = [" ".join(VOCABULARY), " ".join(sorted(EVENT_GENERATORS))]
    lines += [f"When does the {ordinal(k)} occurrence of the word 'much' occur?" for k in range(1, 12)]
    lines += [f"When does the {ordinal(k)} speaker start speaking?" for k in range(1, 12)]
    lines += ["Transcript: a b c. Based on the transcript, output the timestamps for every word."]
    lines += ['[{"word": "much", "start": 0.63}, {"event": "chirp", "start": 1.5}, {"speaker": 2, "start": 4.25}]']
    lines += [" ".join(f"{i / 100:.2f}" for i in range(0, 3000, 7))]
    lines += ["user assistant system You are a helpful assistant. Audio 1: Audio 2:"]
    return lines * 4


def build_tokenizer(vocab_size: int = 1024):
    """-> transformers.PreTrainedTokenizerFast with Qwen-style chat special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
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
