"""Organs: a contiguous block of decoder layers as a standalone, self-describing file.

An organ file is safetensors with tensors keyed relative to the organ
(``0.self_attn.q_proj.weight`` ... ``{k-1}.mlp...``) and a :class:`Manifest`
in its metadata. :func:`load_organ` checks everything (the rules of
:mod:`organfed.shared.organ_rules`) before a tensor is used; :func:`extract_organ`
copies layers out of a model directory shard by shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PretrainedConfig

from organfed.shared.atomic import atomic_path
from organfed.shared.errors import ConfigError, OrganContentError
from organfed.shared.families import FamilyAdapter, adapter_by_name
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.manifest import METADATA_KEY, Manifest
from organfed.shared.model_dir import ModelDir, open_model_dir
from organfed.shared.organ_rules import MAX_ORGAN_HEADER_BYTES, check_entries, expected_tensors, manifest_of
from organfed.shared.safetensors_io import (
    DTYPE_NAMES,
    StreamingWriter,
    TensorSpec,
    hash_entry_header,
    iter_chunks,
    read_header,
    read_tensor,
    tensor_bytes,
)

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
    return manifest_of(read_header(path, max_header_bytes=MAX_ORGAN_HEADER_BYTES))


def load_organ(path: Path | str) -> Organ:
    """Read and validate an organ; raise :class:`OrganFormatError` (or subclass) on any defect.

    Checks, in order: the safetensors header, the manifest, :func:`check_entries`
    (layer indices, tensor names and shapes against the family's layers, dtype,
    parameter count), the digest, finiteness. No tensor is returned unless all pass.
    """
    path = Path(path)
    header = read_header(path, max_header_bytes=MAX_ORGAN_HEADER_BYTES)
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
