"""Every defect of an organ file or a transplant request is refused with a typed error, before use."""

from __future__ import annotations

import dataclasses
import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from organfed.shared.errors import (
    ConfigError,
    IncompatibleOrganError,
    ModelDirError,
    OrganContentError,
    OrganFormatError,
)
from organfed.shared.manifest import METADATA_KEY
from organfed.shared.organ import LayerRange, extract_organ, load_organ
from organfed.shared.surgery import Placement, TransplantMode, plan_transplant, transplant
from organfed.shared.tiny import write_tiny_model


@pytest.fixture(scope="module")
def good(tiny_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("organ") / "organ.safetensors"
    extract_organ(tiny_models["gpt2"], path, LayerRange(2, 5))
    return load_organ(path)


def framed(header: bytes, data_bytes: int) -> bytes:
    return struct.pack("<Q", len(header)) + header + b"\0" * data_bytes


def write_raw(path, tensors, manifest_json):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={METADATA_KEY: manifest_json, "format": "pt"})
    return path


def test_pickle_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "organ.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(OrganFormatError, match="never unpickles"):
        load_organ(path)
    raw = tmp_path / "organ.safetensors"
    raw.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(OrganFormatError, match="pickle"):
        load_organ(raw)


@pytest.mark.parametrize(
    "blob,match",
    [
        (b"", "too short"),
        (struct.pack("<Q", 1 << 40) + b"{}", "exceeds"),
        (struct.pack("<Q", 64) + b"{}", "past the end"),
        (struct.pack("<Q", 4) + b"nope", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (framed(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 4), "spans"),
        (framed(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 2), "ends at byte"),
        (framed(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}', 6), "overlaps"),
        (framed(b'{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}', 4), "unsupported dtype"),
        (framed(b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', 4), "malformed shape"),
    ],
)
def test_malformed_headers(tmp_path, blob, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(OrganFormatError, match=match):
        load_organ(path)


def test_plain_safetensors_without_manifest(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(OrganFormatError, match="no organfed manifest"):
        load_organ(path)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"format_version": 99}, "version"),
        ({"format": "other"}, "not an organfed organ"),
        ({"source_layers": [5, 2]}, "source_layers"),
        ({"num_parameters": -1}, "num_parameters"),
        ({"surprise": 1}, "unknown field"),
        ({"layer_types": ["full_attention"]}, "layer_types"),
    ],
)
def test_bad_manifest_fields(good, tmp_path, change, match):
    data = json.loads(good.manifest.to_json()) | change
    with pytest.raises(OrganFormatError, match=match):
        load_organ(write_raw(tmp_path / "o.safetensors", good.tensors, json.dumps(data)))


def test_missing_and_extra_tensors(good, tmp_path):
    tensors = dict(good.tensors)
    tensors.pop("1.mlp.c_fc.weight")
    with pytest.raises(OrganContentError, match="missing"):
        load_organ(write_raw(tmp_path / "a.safetensors", tensors, good.manifest.to_json()))
    with pytest.raises(OrganContentError, match="unexpected"):
        load_organ(write_raw(tmp_path / "b.safetensors", good.tensors | {"3.extra": torch.zeros(1)}, good.manifest.to_json()))


def test_wrong_shape(good, tmp_path):
    tensors = good.tensors | {"0.ln_1.weight": torch.ones(33)}
    with pytest.raises(OrganContentError, match="shape"):
        load_organ(write_raw(tmp_path / "o.safetensors", tensors, good.manifest.to_json()))


def test_wrong_dtype(good, tmp_path):
    tensors = good.tensors | {"0.ln_1.weight": good.tensors["0.ln_1.weight"].half()}
    with pytest.raises(OrganContentError, match="dtype"):
        load_organ(write_raw(tmp_path / "o.safetensors", tensors, good.manifest.to_json()))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_values(good, tmp_path, value):
    from organfed.shared.organ import make_organ, save_organ

    poisoned = dict(good.tensors)
    poisoned["0.ln_1.weight"] = poisoned["0.ln_1.weight"].clone()
    poisoned["0.ln_1.weight"][3] = value
    path = save_organ(make_organ(poisoned, good.manifest), tmp_path / "o.safetensors")  # digest is consistent
    with pytest.raises(OrganContentError, match="NaN or infinite"):
        load_organ(path)


def test_digest_mismatch(good, tmp_path):
    tensors = good.tensors | {"0.ln_1.weight": good.tensors["0.ln_1.weight"] + 1}
    with pytest.raises(OrganContentError, match="digest"):
        load_organ(write_raw(tmp_path / "o.safetensors", tensors, good.manifest.to_json()))


def test_truncated_and_extended_files(good, tmp_path):
    from organfed.shared.organ import save_organ

    path = save_organ(good, tmp_path / "o.safetensors")
    blob = path.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(blob[:-10])
    with pytest.raises(OrganFormatError, match="truncated"):
        load_organ(tmp_path / "t.safetensors")
    (tmp_path / "e.safetensors").write_bytes(blob + b"\0" * 8)
    with pytest.raises(OrganFormatError, match="extended"):
        load_organ(tmp_path / "e.safetensors")


def test_incompatible_architecture_names_the_number(good, tmp_path):
    wide = write_tiny_model("gpt2", tmp_path / "wide", hidden=64)
    with pytest.raises(IncompatibleOrganError, match="n_embd"):
        plan_transplant(wide, [Placement(good, 0)], TransplantMode.INSERT)


def test_family_mismatch(good, tiny_models):
    with pytest.raises(IncompatibleOrganError, match="gpt2 organ"):
        plan_transplant(tiny_models["llama"], [Placement(good, 0)], TransplantMode.INSERT)


def test_overlapping_and_out_of_range_positions(good, tiny_models):
    with pytest.raises(ConfigError, match="overlaps"):
        plan_transplant(tiny_models["gpt2"], [Placement(good, 0, "a"), Placement(good, 2, "b")], TransplantMode.REPLACE)
    with pytest.raises(ConfigError, match="overlaps"):
        plan_transplant(tiny_models["gpt2"], [Placement(good, 3, "a"), Placement(good, 3, "b")], TransplantMode.INSERT)
    with pytest.raises(ConfigError, match="outside"):
        plan_transplant(tiny_models["gpt2"], [Placement(good, 4)], TransplantMode.REPLACE)
    with pytest.raises(ConfigError, match="outside"):
        plan_transplant(tiny_models["gpt2"], [Placement(good, 7)], TransplantMode.INSERT)


def test_other_base_is_allowed_but_reported(good, tmp_path):
    other = write_tiny_model("gpt2", tmp_path / "other", seed=99)
    plan = plan_transplant(other, [Placement(good, 2)], TransplantMode.REPLACE)
    assert any("WARNING" in w and "different base" in w for w in plan.warnings)


def test_no_output_left_behind_on_failure(good, tiny_models, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError):
        transplant(tiny_models["gpt2"], [Placement(good, 9)], TransplantMode.INSERT, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_without_overwrite(good, tiny_models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        transplant(tiny_models["gpt2"], [Placement(good, 2)], TransplantMode.REPLACE, out)


def test_pickle_only_model_dir(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(ModelDirError, match="never unpickles"):
        extract_organ(d, tmp_path / "o.safetensors")


def test_layer_range_outside_model(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="outside"):
        extract_organ(tiny_models["gpt2"], tmp_path / "o.safetensors", LayerRange(4, 8))
    assert not (tmp_path / "o.safetensors").exists()


def test_manifest_round_trip_is_exact(good):
    from organfed.shared.manifest import Manifest

    assert Manifest.from_json(good.manifest.to_json()) == good.manifest
    assert dataclasses.replace(good.manifest, training={"mode": "wrapper"}).to_json() != good.manifest.to_json()
