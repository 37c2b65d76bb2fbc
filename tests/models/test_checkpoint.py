"""The typed checkpoint manifest: v1 upgrade, refusals by name, weight digests."""

import json
import shutil
from pathlib import Path

import pytest

from framecall.audio.features import FeatureParams
from framecall.models.checkpoint import (FORMAT_VERSION, CheckpointError, LoraSpec, manifest_from_dict,
                                         read_manifest, write_manifest)
from tests_helpers import make_checkpoint, tiny_manifest

V1 = Path(__file__).parents[1] / "fixtures" / "manifest_v1.json"


def test_v1_manifest_loads_through_the_upgrade(tmp_path):
    shutil.copy(V1, tmp_path / "manifest.json")
    m = read_manifest(tmp_path)
    assert m.format_version == FORMAT_VERSION == 2 and m.stage == "frame"
    assert m.head == "poisson" and m.loss == "interpolated+poisson" and m.global_step == 40
    assert m.features == FeatureParams() and m.token_output and m.interp_lambda == 0.05
    assert m.lora == LoraSpec(r=8, alpha=16)  # v1's null targets meant the default projections
    assert m.parent is None and m.policy_version is None and m.weights_sha256 == {}


def test_unknown_version_and_keys_are_refused_by_name(tmp_path):
    data = json.loads(V1.read_text())
    with pytest.raises(CheckpointError, match=r"format_version 7 is not readable by this framecall \(reads \[1\] by upgrade and 2\)"):
        manifest_from_dict({**data, "format_version": 7}, "ckpt")
    with pytest.raises(CheckpointError, match=r"ckpt: unknown config key\(s\) \['heads'\]"):
        manifest_from_dict({**data, "heads": "poisson"}, "ckpt")
    missing = {k: v for k, v in data.items() if k != "subframes"}
    with pytest.raises(CheckpointError, match="subframes"):
        manifest_from_dict(missing, "ckpt")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json: not valid JSON"):
        read_manifest(tmp_path)


def test_roundtrip_and_checks(tmp_path):
    m = tiny_manifest(stage="sft", parent="runs/base", policy_version=3, bidirectional_audio=True,
                      system_prompt="You are a helpful assistant.", tasks=["a", "b"])
    written = write_manifest(tmp_path, m)
    assert read_manifest(tmp_path) == written
    with pytest.raises(CheckpointError, match="is a 'sft' checkpoint, expected 'grpo'"):
        written.check(tmp_path, stage="grpo")
    with pytest.raises(CheckpointError, match="has 4 sub-frames, expected 2; .* qwen2_5_omni backbone, expected qwen2_audio"):
        written.check(tmp_path, subframes=2, model_type="qwen2_audio")
    assert written.check(tmp_path, stage=("sft", "grpo"), head="poisson") is written


def test_weights_digest_catches_a_truncated_file(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c", ["words_all"])
    from framecall.models.frame_model import load_frame_model

    assert set(read_manifest(ckpt).weights_sha256) == {"model.safetensors"}
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model.safetensors: sha256 .* differs from the manifest's"):
        load_frame_model(ckpt)
