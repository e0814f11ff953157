"""What a valid organ is: its manifest against its family, and its tensor list against its manifest.

:func:`check_entries` checks an organ file's header (names, shapes, dtype, count,
order) against its manifest without reading a tensor byte; :func:`load_organ`
and the streamed content check share it. :func:`architecture_mismatch` names the
first architecture number on which two sides differ (for policies and transplants).
A manifest is hostile input: its architecture is checked key by key before any
config is built from it, and modules are only ever built on the meta device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, PretrainedConfig

from organfed.shared.errors import OrganContentError, OrganFormatError, UnsupportedFamilyError
from organfed.shared.families import FamilyAdapter, adapter_by_name
from organfed.shared.manifest import METADATA_KEY, Manifest
from organfed.shared.safetensors_io import DTYPES, SafetensorsHeader, check_name_order

MAX_ORGAN_LAYERS = 1024
"""The most layers an organ may claim (checked before any module is built for it)."""
MAX_ORGAN_HEADER_BYTES = 16 << 20
"""The largest safetensors header an organ may have. 1024 layers of any supported family need about 2 MiB at most
(measured: 0.8-1.5 MiB on the tiny models, more digits in the offsets of a large one add little); the
general safetensors limit (100 MiB, for model shards) would let a forged envelope make the coordinator parse a
100 MB JSON document before its signature is checked."""

# What transformers raises for config values it cannot use (a hostile manifest's architecture numbers).
_CONFIG_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, RuntimeError, StrictDataclassError)


class ArchitectureMismatch(NamedTuple):
    """The first architecture number on which two sides differ, each value shown as ``repr`` or ``absent``."""

    key: str
    found: str
    expected: str


def architecture_mismatch(found: Mapping[str, Any], expected: Mapping[str, Any]) -> ArchitectureMismatch | None:
    """Where ``found`` differs from ``expected`` (exact equality: same keys, equal values); ``None`` when equal.

    Keys both hold with different values come first (they say more), then keys only one holds; each in name order.
    """
    differ = sorted(k for k in found.keys() & expected.keys() if found[k] != expected[k])
    lone = sorted(found.keys() ^ expected.keys())

    def show(side: Mapping[str, Any], key: str) -> str:
        return repr(side[key]) if key in side else "absent"

    for key in differ + lone:
        return ArchitectureMismatch(key, show(found, key), show(expected, key))
    return None


def manifest_adapter(manifest: Manifest) -> FamilyAdapter:
    """The manifest's family adapter, once its model type, architecture keys and layer types are the family's."""
    try:
        adapter = adapter_by_name(manifest.family)
    except UnsupportedFamilyError as exc:
        raise OrganFormatError(f"manifest: {exc}") from None
    if manifest.model_type not in adapter.model_types:
        raise OrganFormatError(
            f"manifest model_type {manifest.model_type!r} is not a {adapter.name} model type ({', '.join(adapter.model_types)})"
        )
    keys, wanted = set(manifest.architecture), set(adapter.architecture_keys)
    if keys != wanted:
        raise OrganFormatError(
            f"manifest architecture of a {adapter.name} organ has unknown key(s) {sorted(keys - wanted)[:5]} "
            f"and lacks key(s) {sorted(wanted - keys)[:5]}"
        )
    problem = adapter.layer_types_problem(manifest.layer_types, manifest.num_layers)
    if problem:
        raise OrganFormatError(f"manifest layer_types: {problem}")
    return adapter


def architecture_config(manifest: Manifest) -> PretrainedConfig:
    """A config of the organ's family carrying its architecture numbers (enough to build its layers)."""
    manifest_adapter(manifest)
    try:
        return AutoConfig.for_model(manifest.model_type, **manifest.architecture)
    except _CONFIG_ERRORS as exc:
        raise OrganFormatError(
            f"manifest architecture is not a valid {manifest.model_type} config: {_one_line(exc)}"
        ) from None


def expected_tensors(manifest: Manifest) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes an organ with this manifest must hold (layers built on the meta device)."""
    if manifest.num_layers > MAX_ORGAN_LAYERS:
        raise OrganFormatError(f"manifest claims {manifest.num_layers} layers; an organ holds at most {MAX_ORGAN_LAYERS}")
    config = architecture_config(manifest)
    adapter = adapter_by_name(manifest.family)
    try:
        with torch.device("meta"):
            layers = adapter.build_layers(config, range(manifest.num_layers), manifest.layer_types)
    except _CONFIG_ERRORS as exc:
        raise OrganFormatError(
            f"manifest architecture does not build {manifest.family} layers: {_one_line(exc)}"
        ) from None
    return {k: tuple(v.shape) for k, v in layers.state_dict().items()}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def check_entries(header: SafetensorsHeader, manifest: Manifest) -> None:
    """Check an organ file's tensor list against its manifest, reading no tensor bytes.

    In order: the layer indices in the names are exactly ``0..k-1`` (a cheap check on names, before any module is
    built), the tensor names and shapes against the family's layers, the dtype, the parameter count, and that the
    tensors' bytes lie in name order (as organfed's and safetensors' own writers put them). Raises
    :class:`OrganFormatError` / :class:`OrganContentError` naming the first defect.
    """
    path, k = header.path, manifest.num_layers
    if k > MAX_ORGAN_LAYERS:
        raise OrganFormatError(f"{path}: manifest claims {k} layers; an organ holds at most {MAX_ORGAN_LAYERS}")
    heads, wanted = {name.partition(".")[0] for name in header.entries}, {str(i) for i in range(k)}
    if wanted - heads:
        missing_layers = sorted(wanted - heads, key=int)[:5]
        raise OrganContentError(f"{path}: missing tensor(s) of layer(s) {', '.join(missing_layers)} (manifest says {k} layers)")
    if heads - wanted:
        raise OrganContentError(f"{path}: unexpected tensor(s) under {sorted(heads - wanted)[:5]!r} (manifest says {k} layers)")
    expected = expected_tensors(manifest)
    found = {name: e.shape for name, e in header.entries.items()}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing:
        raise OrganContentError(f"{path}: missing tensor(s): {', '.join(missing[:5])}")
    if extra:
        raise OrganContentError(f"{path}: unexpected tensor(s): {', '.join(extra[:5])}")
    for name, shape in expected.items():
        if found[name] != shape:
            raise OrganContentError(f"{path}: tensor {name!r} has shape {list(found[name])}, expected {list(shape)}")
    if manifest.dtype not in DTYPES or not DTYPES[manifest.dtype].is_floating_point:
        floats = ", ".join(n for n, t in DTYPES.items() if t.is_floating_point)
        raise OrganFormatError(f"{path}: manifest dtype {manifest.dtype!r} is not a floating-point dtype ({floats})")
    for name, entry in header.entries.items():
        if entry.dtype != manifest.dtype:
            raise OrganContentError(f"{path}: tensor {name!r} has dtype {entry.dtype}, manifest says {manifest.dtype}")
    count = sum(e.numel for e in header.entries.values())
    if count != manifest.num_parameters:
        raise OrganContentError(f"{path}: holds {count} parameters, manifest says {manifest.num_parameters}")
    check_name_order(header)


def manifest_of(header: SafetensorsHeader) -> Manifest:
    """The manifest carried in a checked safetensors header."""
    text = header.metadata.get(METADATA_KEY)
    if text is None:
        raise OrganFormatError(f"{header.path} is safetensors but carries no organfed manifest")
    return Manifest.from_json(text)
