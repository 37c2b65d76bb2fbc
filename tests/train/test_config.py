import pytest

from framecall.config import ConfigError, build_config, save_yaml
from framecall.train.config import TrainJobConfig


def test_layers_and_types(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  lr: 0.01\n  max_steps: 10\nray:\n  num_workers: 2\n")
    cfg = build_config(TrainJobConfig, y, {"train.max_steps": 20}, ["train.lr=3e-4", "eval.decoders=topk,topn_nms"])
    assert cfg.train.lr == 3e-4 and cfg.train.max_steps == 20 and cfg.ray.num_workers == 2
    assert cfg.eval.decoders == ["topk", "topn_nms"] and cfg.head == "poisson"
    save_yaml(cfg, tmp_path / "back.yaml")
    assert build_config(TrainJobConfig, tmp_path / "back.yaml") == cfg


def test_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['train.learning_rate'\]; valid keys of train"):
        build_config(TrainJobConfig, overrides=["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="train.max_steps: expected an integer"):
        build_config(TrainJobConfig, overrides=["train.max_steps=ten"])
    with pytest.raises(ConfigError, match="not a frame loss"):
        build_config(TrainJobConfig, overrides=["train.loss=ctc"])
    with pytest.raises(ConfigError, match="needs a Poisson head"):
        build_config(TrainJobConfig, overrides=["train.loss=binary", "eval.default_decoder=posterior_mode"])
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(TrainJobConfig, "/no/such.yaml")
