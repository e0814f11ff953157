"""Organs: a contiguous block of decoder layers as a standalone, self-describing file.

An organ file is safetensors with tensors keyed relative to the organ
(``0.self_attn.q_proj.weight`` ... ``{k-1}.mlp...``) and a :class:`Manifest`
in its metadata. :func:`load_organ` checks everything before a tensor is used;
:func:`extract_organ` copies layers out of a model directory shard by shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from transformers import AutoConfig, PretrainedConfig

from organfed.shared.atomic import atomic_path
from organfed.shared.errors import ConfigError, OrganContentError, OrganFormatError, UnsupportedFamilyError
from organfed.shared.families import FamilyAdapter, adapter_by_name
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.manifest import METADATA_KEY, Manifest
from organfed.shared.model_dir import ModelDir, open_model_dir
from organfed.shared.safetensors_io import (
    DTYPE_NAMES,
    DTYPES,
    SafetensorsHeader,
    StreamingWriter,
    TensorSpec,
    check_name_order,
    hash_entry_header,
    iter_chunks,
    read_header,
    read_tensor,
    tensor_bytes,
)

MAX_ORGAN_LAYERS = 1024
"""The most layers an organ may claim (checked before any module is built for it)."""

# What transformers raises for config values it cannot use (a hostile manifest's architecture numbers).
_CONFIG_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, RuntimeError, StrictDataclassError)


@dataclass(frozen=True)
class LayerRange:
    """A half-open range of layer indices ``[start, end)``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end):
            raise ConfigError(f"layer range {self.start}:{self.end} must satisfy 0 <= start < end")

    @classmethod
    def parse(cls, text: str) -> LayerRange:
        """Parse ``"S:E"``."""
        try:
            start, end = (int(part) for part in text.split(":"))
        except ValueError:
            raise ConfigError(f"layer range {text!r} must look like START:END, e.g. 4:7") from None
        return cls(start, end)

    @classmethod
    def paper_default(cls, num_layers: int, k: int = 3) -> LayerRange:
        """The paper's default organ: k layers starting at floor(L/3)."""
        k = min(k, num_layers)
        start = min(num_layers // 3, num_layers - k)
        return cls(start, start + k)

    def __len__(self) -> int:
        return self.end - self.start

    def __iter__(self):
        return iter(range(self.start, self.end))

    def __str__(self) -> str:
        return f"{self.start}:{self.end}"


@dataclass(frozen=True)
class OrganSpec:
    """Which organ to take: the family, the base model and its fingerprint, the layer range."""

    family: str
    base_fingerprint: str
    layers: LayerRange
    layer_types: tuple[str, ...] | None = None

    @classmethod
    def from_model_dir(cls, md: ModelDir, layers: LayerRange | None = None) -> OrganSpec:
        layers = layers or LayerRange.paper_default(md.num_layers)
        if layers.end > md.num_layers:
            raise ConfigError(f"layer range {layers} lies outside the model's {md.num_layers} layers")
        types = md.adapter.layer_types(md.config)
        return cls(
            family=md.adapter.name,
            base_fingerprint=fingerprint_model_dir(md.path),
            layers=layers,
            layer_types=tuple(types[layers.start : layers.end]) if types is not None else None,
        )


@dataclass(frozen=True)
class Organ:
    """A loaded, validated organ: its manifest and its tensors keyed relative to the organ."""

    manifest: Manifest
    tensors: dict[str, torch.Tensor]

    @property
    def adapter(self) -> FamilyAdapter:
        return adapter_by_name(self.manifest.family)

    def layer_state(self, index: int) -> dict[str, torch.Tensor]:
        """The tensors of organ layer ``index`` keyed by their in-layer name."""
        head = f"{index}."
        return {k[len(head):]: v for k, v in self.tensors.items() if k.startswith(head)}

    def build_layers(self, config: PretrainedConfig, indices: Iterable[int] | None = None) -> nn.ModuleList:
        """Decoder modules (in eval mode) holding this organ's weights, as layers ``indices`` of a ``config`` model."""
        indices = list(indices) if indices is not None else list(range(*self.manifest.source_layers))
        layers = self.adapter.build_layers(config, indices, self.manifest.layer_types)
        layers.load_state_dict(self.tensors, strict=True)
        return layers.eval()


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


def digest_tensors(items: Iterable[tuple[str, str, tuple[int, ...], Iterable[bytes]]]) -> str:
    """SHA-256 over each tensor's name, dtype, shape and bytes, in name order (items must come sorted)."""
    hasher = hashlib.sha256()
    for name, dtype, shape, chunks in items:
        hash_entry_header(hasher, name, dtype, shape)
        for piece in chunks:
            hasher.update(piece)
    return "sha256:" + hasher.hexdigest()


def read_manifest(path: Path | str) -> Manifest:
    """The manifest of an organ file, after the header checks (no tensor is read)."""
    return manifest_of(read_header(path))


def manifest_of(header: SafetensorsHeader) -> Manifest:
    """The manifest carried in a checked safetensors header."""
    text = header.metadata.get(METADATA_KEY)
    if text is None:
        raise OrganFormatError(f"{header.path} is safetensors but carries no organfed manifest")
    return Manifest.from_json(text)


def load_organ(path: Path | str) -> Organ:
    """Read and validate an organ; raise :class:`OrganFormatError` (or subclass) on any defect.

    Checks, in order: the safetensors header, the manifest, :func:`check_entries`
    (layer indices, tensor names and shapes against the family's layers, dtype,
    parameter count), the digest, finiteness. No tensor is returned unless all pass.
    """
    path = Path(path)
    header = read_header(path)
    manifest = manifest_of(header)
    check_entries(header, manifest)
    with open(path, "rb") as fh:
        tensors = {name: read_tensor(fh, header.entries[name]) for name in sorted(header.entries)}
    digest = digest_tensors((n, manifest.dtype, tuple(t.shape), [tensor_bytes(t)]) for n, t in tensors.items())
    if digest != manifest.tensor_digest:
        raise OrganContentError(f"{path}: tensor digest {digest} does not match the manifest's {manifest.tensor_digest}")
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise OrganContentError(f"{path}: tensor {name!r} holds NaN or infinite values")
    return Organ(manifest, tensors)


def make_organ(tensors: Mapping[str, torch.Tensor], template: Manifest, **changes: object) -> Organ:
    """A new organ from tensors, copying ``template``'s manifest with digest, count and ``changes`` updated."""
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) != 1:
        raise OrganContentError(f"an organ's tensors must share one dtype, got {sorted(map(str, dtypes))}")
    dtype = DTYPE_NAMES[dtypes.pop()]
    ordered = {k: tensors[k].detach().to("cpu").contiguous() for k in sorted(tensors)}
    manifest = dataclasses.replace(
        template,
        dtype=dtype,
        tensor_digest=digest_tensors((n, dtype, tuple(t.shape), [tensor_bytes(t)]) for n, t in ordered.items()),
        num_parameters=sum(t.numel() for t in ordered.values()),
        **changes,
    )
    return Organ(manifest, ordered)


def save_organ(organ: Organ, path: Path | str) -> Path:
    """Write an organ file atomically."""
    specs = [TensorSpec(n, organ.manifest.dtype, tuple(t.shape)) for n, t in organ.tensors.items()]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer = StreamingWriter(fh, specs, {METADATA_KEY: organ.manifest.to_json(), "format": "pt"})
        for name, tensor in organ.tensors.items():
            writer.write_tensor(name, tensor)
        writer.close()
    return Path(path)


def extract_organ(model_dir: Path | str, out: Path | str, layers: LayerRange | None = None) -> Manifest:
    """Copy layers ``layers`` (default: the paper's k=3 from floor(L/3)) of a model into an organ file.

    Reads only those layers' tensors, a chunk at a time: memory stays far below
    the organ's size, whatever the model's.
    """
    md = open_model_dir(model_dir)
    spec = OrganSpec.from_model_dir(md, layers)
    sources = {}
    for offset, index in enumerate(spec.layers):
        for suffix, where in md.layer_entries(index).items():
            sources[f"{offset}.{suffix}"] = where
    names = sorted(sources)
    dtypes = {sources[n][1].dtype for n in names}
    if len(dtypes) != 1:
        raise OrganContentError(f"layers {spec.layers} mix dtypes {sorted(dtypes)}; re-save the model in one dtype")
    dtype = dtypes.pop()

    def chunks(name: str) -> Iterable[bytes]:
        shard, entry = sources[name]
        with open(shard.path, "rb") as fh:
            yield from iter_chunks(fh, entry)

    manifest = Manifest(
        family=md.adapter.name,
        model_type=md.config.model_type,
        architecture=md.adapter.architecture(md.config),
        layer_types=list(spec.layer_types) if spec.layer_types is not None else None,
        source_layers=(spec.layers.start, spec.layers.end),
        source_num_layers=md.num_layers,
        base_fingerprint=spec.base_fingerprint,
        dtype=dtype,
        tensor_digest=digest_tensors((n, dtype, sources[n][1].shape, chunks(n)) for n in names),
        num_parameters=sum(sources[n][1].numel for n in names),
    )
    expected = expected_tensors(manifest)
    if set(expected) != set(names):
        raise OrganContentError(
            f"{md.path}: layers {spec.layers} do not hold the parameters of a {md.adapter.name} layer "
            f"(differ in {', '.join(sorted(set(expected) ^ set(names))[:5])})"
        )
    specs = [TensorSpec(n, dtype, sources[n][1].shape) for n in names]
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        writer = StreamingWriter(fh, specs, {METADATA_KEY: manifest.to_json(), "format": "pt"})
        for name in names:
            writer.write(name, chunks(name))
        writer.close()
    return manifest
