"""The tiny offline tokenizer: chat markers are special, the answer tags are text (issue #15)."""

import pytest

from framecall.models.tokenizer import SPECIAL_TOKENS, build_tokenizer, fingerprint


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_answer_tags_are_one_token_each(tok):
    for tag in ("<answer>", "</answer>"):
        ids = tok(tag, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids) == [tag]
    ids = tok("x <answer>Audio 2</answer>", add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids("<answer>") in ids and tok.convert_tokens_to_ids("</answer>") in ids
    assert "<answer>" not in tok.all_special_tokens and "</answer>" not in tok.all_special_tokens


def test_tags_survive_decoding_without_special_tokens(tok, tmp_path):
    """What backbone.generate_multi does: batch_decode(..., skip_special_tokens=True). The tags stay,
    the chat markers go; the same after save_pretrained / AutoTokenizer (the tiny models' load path)."""
    from transformers import AutoTokenizer

    tok.save_pretrained(str(tmp_path))
    for t in (tok, AutoTokenizer.from_pretrained(str(tmp_path))):
        text = "<|im_start|>assistant\n<answer>Audio 2</answer><|im_end|><|endoftext|>"
        ids = t(text, add_special_tokens=False)["input_ids"]
        assert t.batch_decode([ids], skip_special_tokens=True) == ["assistant\n<answer>Audio 2</answer>"]
        assert t.batch_decode([ids], skip_special_tokens=False) == [text]


def test_chat_tokens_are_special_and_ids_unchanged(tok):
    assert set(SPECIAL_TOKENS) <= set(tok.all_special_tokens)
    # ids as before the change (the tiny models' embeddings are laid out by them)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + ["<answer>", "</answer>"]] == list(range(12))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_tiny_cache_key_follows_the_tokenizer(monkeypatch, tmp_path):
    """A tiny model cached with another tokenizer is never reused: the key holds its fingerprint."""
    import framecall.models.tokenizer as tokenizer_mod
    from framecall.models.tiny import ensure_tiny

    monkeypatch.setenv("FRAMECALL_CACHE", str(tmp_path))
    first = ensure_tiny("tiny-judge")
    assert first.name.endswith(f"-tok{fingerprint()}") and (first / "config.json").is_file()
    monkeypatch.setattr(tokenizer_mod, "fingerprint", lambda vocab_size=1024: "00000000")
    second = ensure_tiny("tiny-judge")
    assert second != first and second.name.endswith("-tok00000000")
