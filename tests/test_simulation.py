"""Flower's simulation engine: the same apps with virtual sites, each reading its own site configuration."""

from __future__ import annotations

import json

import pytest

from organfed.client.node import NodeConfig
from organfed.shared.errors import ConfigError


def test_a_virtual_node_reads_its_site_file(tmp_path):
    node = NodeConfig("site-1", tmp_path / "m", (tmp_path / "d.txt",), tmp_path / "k", tmp_path / "t", tmp_path / "s", "cpu")
    (tmp_path / "1.json").write_text(json.dumps(node.to_dict()))
    assert NodeConfig.for_node({"partition-id": 1, "num-partitions": 3}, {"simulation-sites": str(tmp_path)}) == node
    assert NodeConfig.for_node(node.to_dict(), {}) == node
    with pytest.raises(ConfigError, match="simulation-sites"):
        NodeConfig.for_node({"partition-id": 0, "num-partitions": 3}, {})
    with pytest.raises(ConfigError, match="cannot read"):
        NodeConfig.for_node({"partition-id": 7, "num-partitions": 8}, {"simulation-sites": str(tmp_path)})


def test_node_config_refuses_missing_and_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="lacks"):
        NodeConfig.from_node_config({"site-name": "a"})
    good = NodeConfig("a", tmp_path, (tmp_path,), tmp_path, tmp_path, tmp_path).to_dict()
    with pytest.raises(ConfigError, match="unknown"):
        NodeConfig.from_node_config({**good, "colour": "red"})


@pytest.mark.slow
def test_simulated_federation_of_virtual_sites(tmp_path):
    pytest.importorskip("ray", reason="the simulation engine is the optional extra organfed[simulation]")
    from organfed.server.simulation import SimulationConfig, run_simulation

    report = run_simulation(SimulationConfig(workdir=tmp_path / "sim", corpora_dir=tmp_path / "corpora", num_sites=3,
                                             rounds=1, steps=2, timeout=900, eval_max_tokens=4000))
    data = json.loads(report.with_suffix(".json").read_text())
    assert len(data["history"][0]["accepted"]) == 3
    assert data["evaluation"]["clinical"]["federated"] < data["evaluation"]["clinical"]["base"]
