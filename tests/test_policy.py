"""OrganPolicy and the streaming organ check: the same verdicts as load_organ, in bounded memory, plus policy."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from organfed.shared.errors import ConfigError, OrganContentError, OrganFormatError, PolicyError
from organfed.shared.organ import LayerRange, extract_organ, load_organ, make_organ, save_organ
from organfed.shared.policy import OrganPolicy, check_organ_file


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
