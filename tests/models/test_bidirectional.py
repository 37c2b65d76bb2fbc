"""Bidirectional attention among audio positions (model.bidirectional_audio), on both tiny backbones
and both attention implementations offered (eager, sdpa). No Ray.

How "only later audio changes" is made: the decoder's input at every audio position from the K-th
audio token on is shifted (a forward pre-hook on the language model adds a constant). The audio
encoder is left out of the comparison on purpose: Qwen2-Audio's encoder attends over the whole
30 s window, so changing later *mel frames* would change the early audio embeddings too, with or
without the flag. test_omni_end_to_end_later_mel_frames changes real features instead (the Omni
encoder attends within 2 s windows, so early embeddings do not move).
"""

from __future__ import annotations

import pytest
import torch

from framecall.models.attention import BidirectionalAudioError, audio_block_ids
from framecall.models.backbone import BackboneError, load_backbone
from framecall.models.checkpoint import read_manifest, write_manifest
from framecall.models.frame_model import FrameModel, load_frame_model, save_weights
from tests_helpers import tiny_manifest

BACKBONES = ["tiny-omni", "tiny-qwen2-audio"]
IMPLEMENTATIONS = ["eager", "sdpa"]
SHIFT_FROM = 20  # audio tokens from this one on change; position EARLY is before it
EARLY = 2


@pytest.fixture(scope="module")
def backbones():
    """One loaded backbone per (name, implementation); tests switch the flag on and off."""
    cache: dict[tuple[str, str], object] = {}

    def get(name: str, impl: str):
        if (name, impl) not in cache:
            cache[name, impl] = load_backbone(name, attn_implementation=impl).eval()
        return cache[name, impl]

    return get


def _batch(bb, mel_frames: list[int], seed: int = 0) -> dict:
    """Random log-mel clips of the given lengths (mel frames), zero past each clip's end."""
    g = torch.Generator().manual_seed(seed)
    width = max(mel_frames)
    feats = torch.randn(len(mel_frames), 128, width, generator=g)
    fmask = torch.zeros(len(mel_frames), width, dtype=torch.long)
    for i, n in enumerate(mel_frames):
        fmask[i, :n] = 1
        feats[i, :, n:] = 0
    t_max = max(bb.tokens_for_frames(n) for n in mel_frames)
    prompts = ["When does the word 'much' occur?", "Where is 'x'?"][: len(mel_frames)]
    return {"prompts": prompts, "features": feats, "feature_mask": fmask,
            "token_mask": torch.ones(len(mel_frames), t_max, dtype=torch.bool)}


def _hidden(bb, batch: dict, padding_side: str, shift_audio_from: int | None = None):
    """Final-layer states [B, L, H] and input_ids [B, L]; optionally shift the decoder input at the
    audio positions from the ``shift_audio_from``-th audio token of each row on."""
    ids = bb.build_inputs(batch["prompts"], batch["features"], batch["feature_mask"],
                          padding_side=padding_side).input_ids
    is_audio = ids == bb.audio_token_id
    later = is_audio & (torch.cumsum(is_audio.long(), 1) > (shift_audio_from or 0))  # [B, L]

    def shift(module, args, kwargs):
        kwargs["inputs_embeds"] = kwargs["inputs_embeds"] + 0.5 * later[..., None].to(kwargs["inputs_embeds"])
        return args, kwargs

    handle = bb.inner.language_model.register_forward_pre_hook(shift, with_kwargs=True) \
        if shift_audio_from is not None else None
    try:
        with torch.no_grad():
            hidden, inputs = bb.encode(batch, padding_side=padding_side)
    finally:
        if handle is not None:
            handle.remove()
    assert torch.equal(inputs.input_ids, ids)
    return hidden, ids


def _positions(bb, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per row [B]: an early audio position, a text position before the audio, one after it."""
    is_audio = ids == bb.audio_token_id
    first = is_audio.long().argmax(1)
    last = ids.shape[1] - 1 - is_audio.flip(1).long().argmax(1)
    return {"early_audio": first + EARLY, "text_before": first - 3, "text_after": last + 2}


def test_audio_block_ids_hand_computed():
    """t=text, b=bos, a=audio, e=eos: each closed b..e span is one block (markers included)."""
    t, b, a, e = 5, 1, 7, 2
    ids = torch.tensor([[t, b, a, a, e, t, b, a, e, t],
                        [t, t, b, a, a, a, e, t, t, t],
                        [e, t, b, a, e, t, b, a, a, t]])  # row 3: a stray eos, then an unclosed bos
    want = torch.tensor([[-1, 0, 0, 0, 0, -1, 1, 1, 1, -1],
                         [-1, -1, 0, 0, 0, 0, 0, -1, -1, -1],
                         [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1]])
    assert torch.equal(audio_block_ids(ids, b, e), want)


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("layout", ["batch1", "left_padded", "right_padded"])
def test_early_audio_sees_later_audio_only_when_on(backbones, name, impl, layout):
    bb = backbones(name, impl)
    mel = [300] if layout == "batch1" else [300, 200]  # two lengths: the shorter row is padded
    side = "left" if layout == "left_padded" else "right"
    batch = _batch(bb, mel)
    rows = torch.arange(len(mel))
    for on in (False, True):
        bb.set_bidirectional_audio(on)
        assert bb.bidirectional_audio is on
        base, ids = _hidden(bb, batch, side)
        changed, _ = _hidden(bb, batch, side, shift_audio_from=SHIFT_FROM)
        pos = _positions(bb, ids)
        diff = {k: (base[rows, p] - changed[rows, p]).abs().amax(-1) for k, p in pos.items()}  # [B] each
        if on:
            assert (diff["early_audio"] > 1e-3).all(), diff
        else:
            assert (diff["early_audio"] < 1e-5).all(), diff
        assert (diff["text_before"] < 1e-5).all(), diff  # text before the audio stays causal
        assert (diff["text_after"] > 1e-3).all(), diff  # text after the audio sees it either way
    bb.set_bidirectional_audio(False)


@pytest.mark.parametrize("name", BACKBONES)
def test_eager_and_sdpa_build_the_same_mask(backbones, name):
    """Left-padded batch, flag on: both implementations give the same states."""
    states = []
    for impl in IMPLEMENTATIONS:
        bb = backbones(name, impl)
        bb.set_bidirectional_audio(True)
        hidden, ids = _hidden(bb, _batch(bb, [300, 200]), "left")
        bb.set_bidirectional_audio(False)
        states.append(hidden[ids != bb.tokenizer.pad_token_id])
    assert torch.allclose(states[0], states[1], atol=1e-4)


def test_omni_end_to_end_later_mel_frames(backbones):
    """Real features through the frame path: mel frames after 4 s change; the first audio states
    follow them only with the flag on (the Omni encoder's 2 s windows keep early embeddings fixed)."""
    bb = backbones("tiny-omni", "sdpa")
    batch = _batch(bb, [600])
    later = dict(batch, features=batch["features"].clone())
    later["features"][:, :, 400:] += 1.0
    for on in (False, True):
        bb.set_bidirectional_audio(on)
        with torch.no_grad():
            a, _ = bb(batch)  # [1, T_tok, H]
            b, _ = bb(later)
        early = (a[0, :40] - b[0, :40]).abs().amax()
        assert (early > 1e-3) if on else (early < 1e-5), (on, early)
    bb.set_bidirectional_audio(False)


def _greedy_scores(bb, inputs, steps: int):
    """generate() with the KV cache: input_ids [B, P + steps] and the scores of each step [B, V]."""
    out = bb.model.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                            input_features=inputs.input_features,
                            feature_attention_mask=inputs.feature_attention_mask, max_new_tokens=steps,
                            min_new_tokens=steps, do_sample=False, use_cache=True, output_scores=True,
                            return_dict_in_generate=True, pad_token_id=bb.tokenizer.pad_token_id)
    return out.sequences, out.scores


def _full_forward_logits(bb, inputs, sequences):
    """Logits at the last position of ``sequences`` [B, L'], one forward without a cache."""
    extra = sequences.shape[1] - inputs.input_ids.shape[1]
    attention = torch.cat([inputs.attention_mask, torch.ones(len(sequences), extra, dtype=torch.long)], 1)
    with torch.no_grad():
        return bb.model(input_ids=sequences, attention_mask=attention, input_features=inputs.input_features,
                        feature_attention_mask=inputs.feature_attention_mask, use_cache=False).logits[:, -1]


@pytest.mark.parametrize("name", BACKBONES)
def test_generation_with_the_flag_on(backbones, name):
    """Prefill gets the bidirectional block, decoding steps are causal over the cache: each cached
    step's scores equal a full no-cache forward of the same prefix with the flag on."""
    bb = backbones(name, "sdpa")
    batch = _batch(bb, [300, 200])
    inputs = bb.build_inputs(batch["prompts"], batch["features"], batch["feature_mask"], padding_side="left")
    bb.set_bidirectional_audio(True)
    with torch.no_grad():
        sequences, scores = _greedy_scores(bb, inputs, steps=3)
    prompt_len = inputs.input_ids.shape[1]
    for step in range(3):
        full = _full_forward_logits(bb, inputs, sequences[:, : prompt_len + step])
        assert torch.allclose(scores[step], full, atol=1e-4), step
    texts = bb.generate(batch, max_new_tokens=3, min_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    bb.set_bidirectional_audio(False)
    causal = _full_forward_logits(bb, inputs, sequences[:, :prompt_len])
    assert (causal - scores[0]).abs().max() > 1e-3  # the flag changed what the prompt's last token saw


def test_refuses_attention_that_cannot_take_the_mask(backbones):
    with pytest.raises(BackboneError, match="attn_implementation must be one of"):
        load_backbone("tiny-omni", attn_implementation="flash_attention_2")
    bb = load_backbone("tiny-qwen2-audio")
    config = bb.inner.language_model.config
    config._attn_implementation = "flash_attention_2"  # what a GPU checkpoint's config may ask for
    with pytest.raises(BidirectionalAudioError, match="'flash_attention_2'.*model.attn_implementation=sdpa"):
        bb.set_bidirectional_audio(True)
    assert not bb.bidirectional_audio


def test_inputs_embeds_alone_are_refused(backbones):
    bb = backbones("tiny-omni", "sdpa")
    bb.set_bidirectional_audio(True)
    try:
        with pytest.raises(BidirectionalAudioError, match="needs input_ids"):
            bb.inner(inputs_embeds=torch.zeros(1, 4, bb.hidden_size))
    finally:
        bb.set_bidirectional_audio(False)


@pytest.mark.parametrize("on", [False, True])
def test_flag_round_trips_through_the_manifest(tmp_path, on):
    bb = load_backbone("tiny-omni", bidirectional_audio=on)
    model = FrameModel(bb, "poisson").eval()
    save_weights(model, tmp_path)
    write_manifest(tmp_path, tiny_manifest(bidirectional_audio=on))
    assert read_manifest(tmp_path).bidirectional_audio is on
    loaded, manifest = load_frame_model(tmp_path)
    assert manifest.bidirectional_audio is on and loaded.backbone.bidirectional_audio is on
    # Serve and batch prediction build their engine from the same checkpoint
    from framecall.inference import FrameLocalizer

    engine = FrameLocalizer.from_pretrained(tmp_path, device="cpu")
    assert engine.model.backbone.bidirectional_audio is on


def test_manifest_without_the_field_loads_causal(tmp_path):
    """Checkpoints written before the flag existed were trained causal."""
    import json

    model = FrameModel(load_backbone("tiny-omni"), "poisson")
    save_weights(model, tmp_path)
    write_manifest(tmp_path, tiny_manifest())
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["bidirectional_audio"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    loaded, manifest = load_frame_model(tmp_path)
    assert manifest.bidirectional_audio is False and loaded.backbone.bidirectional_audio is False


def test_training_config_sets_the_flag_and_the_manifest_records_it():
    """model.bidirectional_audio (default on) reaches the manifest every checkpoint of the run carries;
    the training worker builds its model from the same field (train/loop.py setup_worker)."""
    from framecall.config import ConfigError, build_config
    from framecall.train.config import TrainJobConfig
    from framecall.train.runner import frame_manifest

    provenance = {"git_sha": "x", "data_manifest_sha256": "y"}
    for overrides, want in (([], True), (["model.bidirectional_audio=false"], False)):
        cfg = build_config(TrainJobConfig, flags={}, overrides=overrides)
        assert cfg.model.bidirectional_audio is want and cfg.model.attn_implementation == "auto"
        assert frame_manifest(cfg, [], "run", "file:///nowhere", provenance).bidirectional_audio is want
    with pytest.raises(ConfigError, match="model.attn_implementation must be auto, eager or sdpa"):
        build_config(TrainJobConfig, flags={}, overrides=["model.attn_implementation=flash_attention_2"])
