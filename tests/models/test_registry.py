"""LoRA-merged standalone export and model-URI resolution."""

import pyarrow as pa
import pytest
import torch

from framecall.audio.features import FeatureParams
from framecall.data.collate import FrameCollator
from framecall.data.pipeline import PipelineConfig, featurize_batch
from framecall.data.synthetic import SynthConfig, generate
from framecall.models.checkpoint import read_manifest, write_manifest
from framecall.models.export import export_standalone
from framecall.models.frame_model import build_frame_model, load_frame_model, save_weights
from framecall.models.registry import RegistryError, register_checkpoint, resolve_checkpoint
from tests_helpers import tiny_manifest


def _lora_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_frame_model("tiny-omni", "poisson", 4, "lora", token_output=True, token_order="question_first",
                              lora_r=4, lora_alpha=8, lora_targets=["q_proj", "v_proj"])
    with torch.no_grad():  # LoRA B starts at zero: give the adapters something to merge
        for name, p in model.named_parameters():
            if "lora_" in name or name.startswith("head."):
                p.normal_(0, 0.05)
    ckpt = tmp_path / "lora"
    ckpt.mkdir()
    save_weights(model, ckpt)
    write_manifest(ckpt, tiny_manifest(loss="interpolated+poisson", finetune="lora",
                                       lora={"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]}, token_output=True,
                                       token_prompt_order="question_first"))
    return ckpt


def test_lora_export_is_standalone_and_predicts_the_same(tmp_path):
    ckpt = _lora_checkpoint(tmp_path)
    rows = list(generate(SynthConfig(task="words_all", num=2, seed=4, max_seconds=3.0)))
    table = featurize_batch(pa.Table.from_pylist(rows), PipelineConfig(features=FeatureParams()))
    original, _ = load_frame_model(ckpt)
    batch = FrameCollator(tokens_for_frames=original.backbone.tokens_for_frames)(table.to_pydict())
    exported_dir = export_standalone(ckpt, tmp_path / "export")
    moved = tmp_path / "moved"
    exported_dir.rename(moved)  # the export must not depend on where it was written
    exported, manifest = load_frame_model(moved)
    assert manifest.finetune == "head" and manifest.backbone == "backbone"
    assert manifest.exported_from["lora_layers_merged"] == 6  # q and v in 3 layers
    assert not any("lora_" in n for n, _ in exported.named_parameters())
    with torch.no_grad():
        a, _ = original(batch)
        b, _ = exported(batch)
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    assert original.generate_answers(batch, max_new_tokens=6) == exported.generate_answers(batch, max_new_tokens=6)
    with pytest.raises(FileExistsError):
        export_standalone(ckpt, moved)


def test_model_uri_resolution(tmp_path, mlflow_uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    ckpt = _lora_checkpoint(tmp_path)
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("registry-test") or client.get_experiment(
        client.create_experiment("registry-test", artifact_location=(tmp_path / "art").as_uri()))
    run = client.create_run(exp.experiment_id)
    client.log_artifacts(run.info.run_id, str(ckpt), "checkpoint")
    version = register_checkpoint(mlflow_uri, run.info.run_id, "registry-test-model", tags={"framecall.head": "poisson"})
    monkeypatch.setenv("FRAMECALL_CACHE", str(tmp_path / "cache"))
    resolved = resolve_checkpoint(f"models:/registry-test-model/{version}", mlflow_uri)
    assert read_manifest(resolved) == read_manifest(ckpt)
    with pytest.raises(RegistryError, match="MLFLOW_TRACKING_URI"):
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        resolve_checkpoint("models:/registry-test-model/1")
    with pytest.raises(RegistryError, match="models:/no-such-model/1"):
        resolve_checkpoint("models:/no-such-model/1", mlflow_uri)


def test_alias_model_card_and_the_version_serve_shows(tmp_path, mlflow_uri, monkeypatch):
    """Registration sets the alias on the new version and a model card; alias and latest URIs name
    the real registered name and version number (in the registry and in Serve's engine)."""
    from mlflow.tracking import MlflowClient

    from framecall.models.registry import model_card, model_version
    from framecall.serving import ServeSettings, engine_for
    from tests_helpers import make_checkpoint

    monkeypatch.setenv("FRAMECALL_CACHE", str(tmp_path / "cache"))
    ckpt = make_checkpoint(tmp_path / "ckpt", ["words"])
    manifest = read_manifest(ckpt)
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("alias-test") or client.get_experiment(
        client.create_experiment("alias-test", artifact_location=(tmp_path / "art").as_uri()))
    versions = []
    for _ in range(2):
        run = client.create_run(exp.experiment_id)
        client.log_artifacts(run.info.run_id, str(ckpt), "checkpoint")
        card = model_card(manifest, {"acc@20ms": 0.8125}, "alias-test-model: poisson on words")
        versions.append(register_checkpoint(mlflow_uri, run.info.run_id, "alias-test-model", description=card,
                                            alias="latest-good"))
    assert versions[1] == versions[0] + 1
    registered = MlflowClient(mlflow_uri, registry_uri=mlflow_uri).get_model_version_by_alias("alias-test-model",
                                                                                            "latest-good")
    assert int(registered.version) == versions[1]
    assert f"| backbone | {manifest.backbone} |" in registered.description
    assert "| head | poisson |" in registered.description and "| acc@20ms | 0.8125 |" in registered.description
    for ref in ("models:/alias-test-model@latest-good", "models:/alias-test-model/latest"):
        assert model_version(ref, mlflow_uri) == ("alias-test-model", str(versions[1]))
    assert model_version(f"models:/alias-test-model/{versions[0]}", mlflow_uri) == ("alias-test-model",
                                                                                    str(versions[0]))
    with pytest.raises(RegistryError, match="no-such-alias"):
        model_version("models:/alias-test-model@no-such-alias", mlflow_uri)
    engine = engine_for(ServeSettings(checkpoint="models:/alias-test-model@latest-good", registry_uri=mlflow_uri))
    assert (engine.info["name"], engine.info["version"]) == ("alias-test-model", str(versions[1]))
