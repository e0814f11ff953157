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


# --- Manifests that lie about the family, architecture, layer types or layer count -----------------------------

@pytest.fixture(scope="module")
def oss(tiny_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("oss-organ") / "organ.safetensors"
    extract_organ(tiny_models["gpt-oss"], path, LayerRange(2, 4))
    return load_organ(path)


def refused_by_both(path, error=OrganFormatError, match=None):
    """load_organ and the streaming check_organ_file give the same verdict (one shared entry check)."""
    from organfed.shared.content_check import check_organ_file

    for check in (load_organ, check_organ_file):
        with pytest.raises(error, match=match):
            check(path)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"model_type": "llama"}, "not a gpt2 model type"),
        ({"family": "llama", "model_type": "llama"}, "unknown key"),
        ({"family": "nope"}, "unknown family"),
        ({"architecture_extra": {"rope_scaling": "x"}}, "unknown key.*rope_scaling"),
        ({"architecture_set": {"n_embd": "a"}}, "not a valid gpt2 config"),
        ({"architecture_set": {"n_head": 0}}, "does not build gpt2 layers"),
        ({"architecture_set": {"activation_function": "nope"}}, "does not build gpt2 layers"),
        ({"layer_types": ["full_attention"] * 3}, "must be null"),
    ],
)
def test_lying_manifest_is_a_format_error(good, tmp_path, change, match):
    data = json.loads(good.manifest.to_json())
    data["architecture"] |= change.pop("architecture_extra", {}) | change.pop("architecture_set", {})
    path = write_raw(tmp_path / "o.safetensors", good.tensors, json.dumps(data | change))
    refused_by_both(path, OrganFormatError, match)


@pytest.mark.parametrize("types,match", [(["foo", "bar"], "unknown gpt-oss layer type"), (None, "got null")])
def test_gpt_oss_layer_types_must_be_known(oss, tmp_path, types, match):
    data = json.loads(oss.manifest.to_json()) | {"layer_types": types}
    refused_by_both(write_raw(tmp_path / "o.safetensors", oss.tensors, json.dumps(data)), OrganFormatError, match)


def test_plan_refuses_bad_layer_types_of_an_organ_made_in_memory(oss, tiny_models):
    for types in (["foo", "bar"], None):
        bad = dataclasses.replace(oss, manifest=dataclasses.replace(oss.manifest, layer_types=types))
        with pytest.raises(OrganFormatError, match="layer_types"):
            plan_transplant(tiny_models["gpt-oss"], [Placement(bad, 2)], TransplantMode.REPLACE)


def test_a_huge_layer_claim_is_refused_before_building_modules(good, tmp_path, monkeypatch):
    from organfed.shared import organ_rules

    def never(manifest):
        raise AssertionError(f"built modules for {manifest.num_layers} claimed layers")

    data = json.loads(good.manifest.to_json())
    with monkeypatch.context() as patch:
        patch.setattr(organ_rules, "expected_tensors", never)
        claims_3000 = json.dumps(data | {"source_layers": [0, 3000], "source_num_layers": 3000})
        refused_by_both(write_raw(tmp_path / "a.safetensors", good.tensors, claims_3000), OrganFormatError, "at most 1024")
        claims_500 = json.dumps(data | {"source_layers": [0, 500], "source_num_layers": 500})
        refused_by_both(write_raw(tmp_path / "b.safetensors", good.tensors, claims_500), OrganContentError, "missing tensor.*layer")
    with pytest.raises(OrganFormatError, match="at most 1024"):
        organ_rules.expected_tensors(dataclasses.replace(good.manifest, source_layers=(0, 1025), source_num_layers=1025))
    renamed = {("7" + k[1:] if k.startswith("2.") else k): v for k, v in good.tensors.items()}
    refused_by_both(write_raw(tmp_path / "c.safetensors", renamed, good.manifest.to_json()), OrganContentError, "missing tensor")


def test_a_non_float_manifest_dtype_is_named_as_such(good, tmp_path):
    data = json.loads(good.manifest.to_json()) | {"dtype": "I32"}
    ints = {k: v.to(torch.int32) for k, v in good.tensors.items()}
    path = write_raw(tmp_path / "o.safetensors", ints, json.dumps(data))
    refused_by_both(path, OrganFormatError, "not a floating-point dtype")


# --- Transplant edge cases ----------------------------------------------------------------------------------------

def test_scale_attn_by_inverse_layer_idx_refuses_insert(tmp_path):
    model = write_tiny_model("gpt2", tmp_path / "scaled")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(config | {"scale_attn_by_inverse_layer_idx": True}))
    extract_organ(model, tmp_path / "o.safetensors", LayerRange(2, 5))
    organ = load_organ(tmp_path / "o.safetensors")
    for position in (2, 0):
        with pytest.raises(IncompatibleOrganError, match="insert renumbers"):
            plan_transplant(model, [Placement(organ, position)], TransplantMode.INSERT)
    with pytest.raises(IncompatibleOrganError, match="only go back to 2"):
        plan_transplant(model, [Placement(organ, 1)], TransplantMode.REPLACE)
    assert len(plan_transplant(model, [Placement(organ, 2)], TransplantMode.REPLACE).layers) == 6


def test_narrowing_conversion_that_overflows_is_refused(good, tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    from organfed.shared.organ import make_organ

    half = tmp_path / "half"
    AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"], dtype=torch.float16).save_pretrained(half)
    tensors = dict(good.tensors)
    tensors["1.mlp.c_fc.weight"] = tensors["1.mlp.c_fc.weight"].clone()
    tensors["1.mlp.c_fc.weight"][0, 0] = 1e6  # finite in F32, inf in F16
    organ = make_organ(tensors, good.manifest)
    with pytest.raises(IncompatibleOrganError, match=r"1\.mlp\.c_fc\.weight.*F32 to the recipient's F16"):
        transplant(half, [Placement(organ, 2)], TransplantMode.REPLACE, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half"]
    transplant(half, [Placement(good, 2)], TransplantMode.REPLACE, tmp_path / "out")  # in range: converted


def test_failed_final_rename_puts_the_previous_output_back(good, tiny_models, tmp_path, monkeypatch):
    from pathlib import Path

    from organfed.shared import surgery

    out = tmp_path / "out"
    out.mkdir()
    (out / "marker").write_text("previous")
    events, real_rename, real_fsync = [], Path.rename, surgery.fsync_dir

    def rename(self, target):
        events.append(("rename", self.name))
        if self.name.startswith(".tmp-out.") and Path(target) == out:
            raise OSError("disk said no")
        return real_rename(self, target)

    def fsync_dir(path):
        events.append(("fsync", Path(path).name))
        real_fsync(path)

    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(surgery, "fsync_dir", fsync_dir)
    with pytest.raises(OSError, match="disk said no"):
        transplant(tiny_models["gpt2"], [Placement(good, 2)], TransplantMode.REPLACE, out, overwrite=True)
    assert (out / "marker").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or moved-aside directory left
    tmp_name = next(name for kind, name in events if kind == "rename" and name.startswith(".tmp-out."))
    assert events.index(("fsync", tmp_name)) < events.index(("rename", tmp_name))  # the new directory was flushed first


# --- Model directories with hostile key names or indexes ------------------------------------------------------------

def test_model_dir_refuses_malformed_layer_keys_traversing_and_duplicated_shards(tiny_models, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from organfed.shared.model_dir import INDEX_NAME, open_model_dir

    md = open_model_dir(tiny_models["llama"])
    with pytest.raises(ModelDirError, match="not named"):
        md.layer_of("model.layers.x.foo")
    assert md.layer_of("model.norm.weight") is None

    odd = tmp_path / "odd"
    shutil.copytree(tiny_models["llama"], odd)
    tensors = load_file(str(odd / "model.safetensors"))
    save_file(tensors | {"model.layers.x.foo": torch.zeros(2)}, str(odd / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelDirError, match="not named"):
        open_model_dir(odd)

    for name, bad_shard in (("escape", "../model.safetensors"), ("dotdot", ".."), ("nested", "sub/model.safetensors")):
        d = tmp_path / name
        shutil.copytree(tiny_models["llama"], d)
        (d / INDEX_NAME).write_text(json.dumps({"weight_map": {"model.norm.weight": bad_shard}}))
        with pytest.raises(ModelDirError, match="plain file names"):
            open_model_dir(d)

    dup = tmp_path / "dup"
    shutil.copytree(tiny_models["llama"], dup)
    (dup / "model.safetensors").rename(dup / "model-00001-of-00002.safetensors")
    save_file({"model.norm.weight": tensors["model.norm.weight"]}, str(dup / "model-00002-of-00002.safetensors"))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in tensors}
    weight_map["model.norm.weight"] = "model-00002-of-00002.safetensors"
    (dup / INDEX_NAME).write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ModelDirError, match="is in both"):
        open_model_dir(dup)


def test_tensors_out_of_name_order_are_refused(oss, tmp_path):
    """The digest is over tensors in name order; organs store them so, and a one-pass check relies on it."""
    from organfed.shared.manifest import METADATA_KEY
    from organfed.shared.safetensors_io import StreamingWriter, TensorSpec

    names = sorted(oss.tensors, reverse=True)
    path = tmp_path / "reversed.safetensors"
    with open(path, "wb") as fh:
        writer = StreamingWriter(fh, [TensorSpec(n, oss.manifest.dtype, tuple(oss.tensors[n].shape)) for n in names],
                                 {METADATA_KEY: oss.manifest.to_json(), "format": "pt"})
        for name in names:
            writer.write_tensor(name, oss.tensors[name])
        writer.close()
    refused_by_both(path, OrganFormatError, "name order")


def test_an_organ_header_above_16_mib_is_refused_unread(tmp_path):
    """Organs have small headers; the 100 MiB safetensors limit would let a forged envelope cost a 100 MB parse."""
    import struct

    path = tmp_path / "big-header.safetensors"
    path.write_bytes(struct.pack("<Q", (16 << 20) + 1) + b"{" * 4096)
    refused_by_both(path, OrganFormatError, "exceeds the 16777216-byte limit")
