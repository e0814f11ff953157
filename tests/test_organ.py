"""Extract and transplant: exact round trips, insert and compose against hand-built references."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from organfed.shared.model_dir import load_model, open_model_dir
from organfed.shared.organ import LayerRange, extract_organ, load_organ, read_manifest
from organfed.shared.surgery import Placement, TransplantMode, transplant

IDS = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(7))


@pytest.fixture
def organ_path(tiny_models, family, tmp_path):
    path = tmp_path / "organ.safetensors"
    extract_organ(tiny_models[family], path, LayerRange(2, 5))
    return path


def test_paper_default_range():
    assert LayerRange.paper_default(12) == LayerRange(4, 7)
    assert LayerRange.paper_default(6) == LayerRange(2, 5)
    assert LayerRange.paper_default(2) == LayerRange(0, 2)


def test_extract_default_is_three_layers_from_a_third(tiny_models, family, tmp_path):
    manifest = extract_organ(tiny_models[family], tmp_path / "o.safetensors")
    assert manifest.source_layers == (2, 5)
    assert read_manifest(tmp_path / "o.safetensors") == manifest


def test_manifest_records_the_source(organ_path, tiny_models, family):
    m = load_organ(organ_path).manifest
    md = open_model_dir(tiny_models[family])
    assert m.family == md.adapter.name and m.source_num_layers == 6
    assert m.architecture == md.adapter.architecture(md.config)
    assert m.base_fingerprint.startswith("sha256:") and m.tensor_digest.startswith("sha256:")
    if family == "gpt-oss":
        assert m.layer_types == md.config.layer_types[2:5]


@torch.no_grad()
def test_replace_at_source_reproduces_logits(organ_path, tiny_models, family, tmp_path):
    organ = load_organ(organ_path)
    transplant(tiny_models[family], [Placement(organ, 2)], TransplantMode.REPLACE, tmp_path / "out")
    original = load_model(tiny_models[family])(IDS).logits
    assert (load_model(tmp_path / "out")(IDS).logits - original).abs().max() <= 1e-6


@torch.no_grad()
def test_insert_matches_spliced_reference(organ_path, tiny_models, family, tmp_path):
    organ = load_organ(organ_path)
    transplant(tiny_models[family], [Placement(organ, 1)], TransplantMode.INSERT, tmp_path / "out")
    out = load_model(tmp_path / "out")
    base = load_model(tiny_models[family])
    adapter = open_model_dir(tiny_models[family]).adapter
    assert adapter.num_layers(out.config) == 9
    layers = list(adapter.layers(base))
    spliced = layers[:1] + list(organ.build_layers(out.config, range(1, 4))) + layers[1:]
    assert (out(IDS).logits - adapter.forward(base, IDS, spliced)).abs().max() <= 1e-6
    if family == "gpt-oss":
        assert out.config.layer_types == base.config.layer_types[:1] + organ.manifest.layer_types + base.config.layer_types[1:]


@torch.no_grad()
def test_compose_two_organs_matches_reference(tiny_models, family, tmp_path):
    extract_organ(tiny_models[family], tmp_path / "a.safetensors", LayerRange(0, 2))
    extract_organ(tiny_models[family], tmp_path / "b.safetensors", LayerRange(3, 6))
    a, b = load_organ(tmp_path / "a.safetensors"), load_organ(tmp_path / "b.safetensors")
    transplant(tiny_models[family], [Placement(b, 5), Placement(a, 2)], TransplantMode.INSERT, tmp_path / "out")
    out = load_model(tmp_path / "out")
    base = load_model(tiny_models[family])
    adapter = open_model_dir(tiny_models[family]).adapter
    layers = list(adapter.layers(base))
    spliced = (
        layers[:2] + list(a.build_layers(out.config, range(2, 4))) + layers[2:5]
        + list(b.build_layers(out.config, range(7, 10))) + layers[5:]
    )
    assert adapter.num_layers(out.config) == 11
    assert (out(IDS).logits - adapter.forward(base, IDS, spliced)).abs().max() <= 1e-6


@torch.no_grad()
def test_compose_replace_at_sources_is_identity(tiny_models, family, tmp_path):
    extract_organ(tiny_models[family], tmp_path / "a.safetensors", LayerRange(0, 2))
    extract_organ(tiny_models[family], tmp_path / "b.safetensors", LayerRange(3, 6))
    placements = [Placement(load_organ(tmp_path / n), p) for n, p in (("a.safetensors", 0), ("b.safetensors", 3))]
    transplant(tiny_models[family], placements, TransplantMode.REPLACE, tmp_path / "out")
    original = load_model(tiny_models[family])(IDS).logits
    assert (load_model(tmp_path / "out")(IDS).logits - original).abs().max() <= 1e-6


def test_output_loads_in_vanilla_transformers(organ_path, tiny_models, family, tmp_path):
    organ = load_organ(organ_path)
    transplant(tiny_models[family], [Placement(organ, 0)], TransplantMode.INSERT, tmp_path / "out")
    script = (
        "import sys, json, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'out')!r}, local_files_only=True)\n"
        f"t = AutoTokenizer.from_pretrained({str(tmp_path / 'out')!r}, local_files_only=True)\n"
        "ids = torch.tensor([t('hello')['input_ids']])\n"
        "m(ids)\n"
        "assert not any(k.startswith('organfed') for k in sys.modules)\n"
        "print(json.dumps({'layers': m.config.num_hidden_layers}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"layers": 9}


def test_sharded_recipient_streams_shard_by_shard(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).save_pretrained(sharded, max_shard_size="20KB")
    assert len(list(sharded.glob("model-*.safetensors"))) > 2
    extract_organ(sharded, tmp_path / "o.safetensors", LayerRange(2, 5))
    organ = load_organ(tmp_path / "o.safetensors")
    transplant(sharded, [Placement(organ, 6)], TransplantMode.INSERT, tmp_path / "out")
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert any(k.startswith("model.layers.8.") for k in index["weight_map"])
    with torch.no_grad():
        out = load_model(tmp_path / "out")
        base = load_model(sharded)
        adapter = open_model_dir(sharded).adapter
        spliced = list(adapter.layers(base)) + list(organ.build_layers(out.config, range(6, 9)))
        assert (out(IDS).logits - adapter.forward(base, IDS, spliced)).abs().max() <= 1e-6


def test_single_shard_recipient_with_an_index_keeps_its_index(tiny_models, tmp_path):
    import shutil

    from safetensors import safe_open

    single = tmp_path / "single"
    shutil.copytree(tiny_models["llama"], single)
    shard = "model-00001-of-00001.safetensors"
    (single / "model.safetensors").rename(single / shard)
    with safe_open(str(single / shard), "pt") as fh:
        weight_map = {k: shard for k in fh.keys()}
    (single / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    extract_organ(single, tmp_path / "o.safetensors", LayerRange(2, 5))
    organ = load_organ(tmp_path / "o.safetensors")
    transplant(single, [Placement(organ, 1)], TransplantMode.INSERT, tmp_path / "out")
    transplant(tiny_models["llama"], [Placement(organ, 1)], TransplantMode.INSERT, tmp_path / "reference")
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {shard} and not (tmp_path / "out" / "model.safetensors").exists()
    with torch.no_grad():
        got, want = load_model(tmp_path / "out")(IDS).logits, load_model(tmp_path / "reference")(IDS).logits
    assert torch.equal(got, want)
