"""cluster.yaml passes Ray's own cluster-launcher validation and asks for what the project needs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

import ray

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_validates_as_written_against_rays_schema(cluster_config):
    """The file itself, before defaults are merged (the old top-level min_workers failed here)."""
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(cluster_config, json.loads(schema_path.read_text()))


def test_cluster_yaml_validates_like_ray_up_does(cluster_config):
    """``ray up`` merges the provider's defaults (prepare_config), then validates."""
    prepared = prepare_config(cluster_config)
    validate_config(prepared)
    assert prepared["head_node_type"] == "head_cpu"


def test_workers_are_autoscaled_four_gpu_h100_nodes_and_the_head_holds_no_gpu(cluster_config):
    types = cluster_config["available_node_types"]
    head = types[cluster_config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = [t for name, t in types.items() if name != cluster_config["head_node_type"]]
    assert gpu_types and all(t["resources"]["GPU"] == 4 for t in gpu_types)
    assert all(t["resources"].get("accelerator_type:H100") for t in gpu_types)
    assert all(0 <= t["min_workers"] <= t["max_workers"] <= cluster_config["max_workers"] for t in gpu_types)


def test_every_node_installs_the_project_with_the_pinned_constraints(cluster_config):
    mounts = cluster_config["file_mounts"]
    assert mounts["~/framecall"] == "."
    assert "~/.ray/auth_token" in mounts  # token authentication stays on across nodes
    setup = " && ".join(cluster_config["setup_commands"])
    assert "-c constraints.txt -e ." in setup
    assert all("RAY_AUTH_MODE=token" in " ".join(cmds) for cmds in
               (cluster_config["head_start_ray_commands"], cluster_config["worker_start_ray_commands"]))
    assert "--dashboard-host=127.0.0.1" in " ".join(cluster_config["head_start_ray_commands"])
