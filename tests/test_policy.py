"""OrganPolicy and the streaming organ check: the same verdicts as load_organ, in bounded memory, plus policy."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from organfed.shared.content_check import check_organ_file
from organfed.shared.errors import ConfigError, OrganContentError, OrganFormatError, PolicyError
from organfed.shared.organ import LayerRange, extract_organ, load_organ, make_organ, save_organ
from organfed.shared.policy import OrganPolicy


@pytest.fixture(scope="module")
def organs(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("policy-organs")
    return {family: (extract_organ(model, root / f"{family}.safetensors", LayerRange(1, 3)), root / f"{family}.safetensors")
            for family, model in tiny_models.items()}


def test_streaming_check_agrees_with_load_organ(organs):
    for manifest, path in organs.values():
        organ = load_organ(path)
        check = check_organ_file(path, chunk=4096)
        assert check.manifest == manifest == organ.manifest
        expected = math.sqrt(sum(float(t.double().square().sum()) for t in organ.tensors.values()))
        assert check.norm == pytest.approx(expected, rel=1e-6)  # float32 accumulation within a chunk


def test_streaming_check_finds_content_defects(organs, tmp_path):
    manifest, path = organs["gpt2"]
    organ = load_organ(path)
    name = sorted(organ.tensors)[-1]
    for value in (torch.nan, torch.inf):
        tensors = {k: v.clone() for k, v in organ.tensors.items()}
        tensors[name].view(-1)[-1] = value
        bad = save_organ(make_organ(tensors, manifest), tmp_path / "bad.safetensors")
        with pytest.raises(OrganContentError, match="NaN or infinite"):
            check_organ_file(bad)
    huge = {k: v.clone() for k, v in organ.tensors.items()}
    huge[name].fill_(1e30)  # squares overflow float32: the check falls back to float64
    norm = check_organ_file(save_organ(make_organ(huge, manifest), tmp_path / "huge.safetensors")).norm
    assert norm == pytest.approx(1e30 * math.sqrt(huge[name].numel()), rel=1e-6)
    flipped = bytearray(path.read_bytes())
    flipped[-3] ^= 0x10
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(OrganContentError, match="digest"):
        check_organ_file(tmp_path / "flipped.safetensors")
    (tmp_path / "short.safetensors").write_bytes(path.read_bytes()[:-8])
    with pytest.raises(OrganFormatError):
        check_organ_file(tmp_path / "short.safetensors")
    wrong_count = dataclasses.replace(manifest, num_parameters=manifest.num_parameters + 1)
    with pytest.raises(OrganContentError, match="parameters"):
        check_organ_file(save_organ(dataclasses.replace(organ, manifest=wrong_count), tmp_path / "count.safetensors"))


def test_policy_checks_manifest_size_and_norm(organs):
    manifest, path = organs["llama"]
    norm = check_organ_file(path).norm
    assert check_organ_file(path, OrganPolicy.like(manifest, max_norm=norm * 1.01)).norm == norm
    cases = {
        "family": OrganPolicy(family="gpt2"),
        "layers": OrganPolicy(layers=(2, 4)),
        "base_fingerprint": OrganPolicy(base_fingerprint="sha256:" + "1" * 64),
        "dtype": OrganPolicy(dtype="BF16"),
        "hidden_size": OrganPolicy(architecture={"hidden_size": 64}),
        "exceeds the limit of": OrganPolicy(max_norm=norm * 0.99),
        "bytes exceeds": OrganPolicy(max_bytes=100),
    }
    for needle, policy in cases.items():
        with pytest.raises(PolicyError, match=needle) as info:
            check_organ_file(path, policy)
        assert info.value.reason == "policy"


@pytest.mark.parametrize("kwargs", [
    {"layers": (3, 3)}, {"layers": (0, 1, 2)}, {"base_fingerprint": "md5:x"}, {"dtype": "F8"},
    {"max_norm": 0}, {"max_norm": math.inf}, {"max_bytes": 0},
])
def test_policy_validates_its_fields(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        OrganPolicy(**kwargs)


def test_like_records_model_type_layer_types_and_source_layer_count(organs):
    manifest, _ = organs["gpt-oss"]
    policy = OrganPolicy.like(manifest)
    assert (policy.model_type, policy.layer_types, policy.source_num_layers) == (
        manifest.model_type, tuple(manifest.layer_types), manifest.source_num_layers)
    policy.check_manifest(manifest)
    other_types = ["full_attention" if t == "sliding_attention" else "sliding_attention" for t in manifest.layer_types]
    cases = {
        "model_type": {"model_type": "llama"},
        "layer_types": {"layer_types": other_types},
        "source_num_layers": {"source_num_layers": manifest.source_num_layers + 1},
    }
    for needle, change in cases.items():
        with pytest.raises(PolicyError, match=needle):
            policy.check_manifest(dataclasses.replace(manifest, **change))
    with pytest.raises(PolicyError, match="layer_types"):
        policy.check_manifest(dataclasses.replace(manifest, layer_types=None))


def test_policy_architecture_must_match_exactly(organs, tmp_path):
    from safetensors.torch import save_file

    from organfed.shared.manifest import METADATA_KEY

    manifest, path = organs["gpt2"]
    policy = OrganPolicy.like(manifest)
    extra = dataclasses.replace(manifest, architecture=manifest.architecture | {"rope_scaling": "x"})
    with pytest.raises(PolicyError, match="rope_scaling is 'x', the policy expects absent"):
        policy.check_manifest(extra)
    fewer = dataclasses.replace(manifest, architecture={k: v for k, v in manifest.architecture.items() if k != "n_head"})
    with pytest.raises(PolicyError, match="n_head is absent"):
        policy.check_manifest(fewer)
    # the whole file check refuses it with the policy's error, before any config is built from it
    organ = load_organ(path)
    bad = tmp_path / "extra.safetensors"
    save_file(dict(organ.tensors), str(bad), metadata={METADATA_KEY: extra.to_json(), "format": "pt"})
    with pytest.raises(PolicyError, match="rope_scaling"):
        check_organ_file(bad, policy)
    with pytest.raises(OrganFormatError, match="rope_scaling"):
        check_organ_file(bad)


@pytest.mark.parametrize("kwargs", [
    {"model_type": ""}, {"layer_types": "full_attention"}, {"layer_types": [1]},
    {"layers": (0, 2), "layer_types": ["full_attention"]}, {"source_num_layers": 0},
    {"layers": (0, 4), "source_num_layers": 3}, {"architecture": ["n_embd"]},
])
def test_policy_validates_its_new_fields(kwargs):
    with pytest.raises(ConfigError, match=list(kwargs)[-1]):
        OrganPolicy(**kwargs)
