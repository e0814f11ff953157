"""What a coordinator accepts: an :class:`OrganPolicy`, and a streaming organ check that applies it.

:func:`check_organ_file` runs the checks of :func:`organfed.shared.organ.load_organ`
(header, manifest, tensor names, shapes, dtypes, count, digest, finiteness) but
reads the tensors a chunk at a time instead of loading them, so that opening a
multi-GB organ needs memory independent of its size. In the same pass it
measures the organ's norm: the L2 norm of all its parameters together (float32
accumulation within a chunk, float64 across chunks and on overflow).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from organfed.shared.errors import ConfigError, OrganContentError, PolicyError
from organfed.shared.manifest import Manifest
from organfed.shared.organ import expected_tensors, read_manifest
from organfed.shared.safetensors_io import DTYPES, hash_entry_header, read_header

CHECK_CHUNK = 1 << 20


@dataclass(frozen=True)
class OrganPolicy:
    """Expectations for an incoming organ; ``None`` means "any". ``architecture`` entries must match exactly."""

    family: str | None = None
    layers: tuple[int, int] | None = None
    base_fingerprint: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None
    max_norm: float | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))
            if len(self.layers) != 2 or not all(type(v) is int for v in self.layers) or not 0 <= self.layers[0] < self.layers[1]:
                raise ConfigError(f"policy field 'layers' must be a half-open range (start, end), got {self.layers!r}")
        if self.base_fingerprint is not None and not self.base_fingerprint.startswith("sha256:"):
            raise ConfigError(f"policy field 'base_fingerprint' must look like 'sha256:<hex>', got {self.base_fingerprint!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"policy field 'dtype' must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.max_norm is not None and not (isinstance(self.max_norm, (int, float)) and 0 < self.max_norm < math.inf):
            raise ConfigError(f"policy field 'max_norm' must be a positive finite number, got {self.max_norm!r}")
        if self.max_bytes is not None and not (type(self.max_bytes) is int and self.max_bytes > 0):
            raise ConfigError(f"policy field 'max_bytes' must be a positive integer, got {self.max_bytes!r}")

    @classmethod
    def like(cls, manifest: Manifest, *, max_norm: float | None = None, max_bytes: int | None = None) -> OrganPolicy:
        """The policy that accepts organs shaped like ``manifest`` (the spec a coordinator announced)."""
        return cls(family=manifest.family, layers=manifest.source_layers, base_fingerprint=manifest.base_fingerprint,
                   architecture=dict(manifest.architecture), dtype=manifest.dtype, max_norm=max_norm, max_bytes=max_bytes)

    def check_size(self, nbytes: int) -> None:
        if self.max_bytes is not None and nbytes > self.max_bytes:
            raise PolicyError(f"organ of {nbytes} bytes exceeds the limit of {self.max_bytes}")

    def check_manifest(self, manifest: Manifest) -> None:
        """Raise :class:`PolicyError` naming the first field that differs from the expectation."""
        wanted = {"family": self.family, "dtype": self.dtype, "base_fingerprint": self.base_fingerprint,
                  "layers": self.layers}
        found = {"family": manifest.family, "dtype": manifest.dtype, "base_fingerprint": manifest.base_fingerprint,
                 "layers": manifest.source_layers}
        for name, value in wanted.items():
            if value is not None and found[name] != value:
                raise PolicyError(f"organ {name} is {found[name]!r}, the policy expects {value!r}")
        for name, value in self.architecture.items():
            if manifest.architecture.get(name) != value:
                raise PolicyError(f"organ architecture {name}={manifest.architecture.get(name)!r}, the policy expects {value!r}")

    def check_norm(self, norm: float) -> None:
        if self.max_norm is not None and not norm <= self.max_norm:
            raise PolicyError(f"organ norm {norm:.6g} exceeds the limit of {self.max_norm:g}")


@dataclass(frozen=True)
class OrganCheck:
    """What a passed check learnt: the manifest and the organ's L2 norm."""

    manifest: Manifest
    norm: float


def _squared_norm(values: torch.Tensor, path: Path, name: str) -> float:
    """Sum of squares of ``values`` (float32 accumulation, float64 if that overflows); refuses NaN and inf."""
    norm = float(torch.linalg.vector_norm(values, dtype=torch.float32 if values.element_size() <= 4 else None))
    if not math.isfinite(norm):
        if not torch.isfinite(values).all():
            raise OrganContentError(f"{path}: tensor {name!r} holds NaN or infinite values")
        norm = float(torch.linalg.vector_norm(values.double()))
    return norm * norm


def check_organ_file(path: Path | str, policy: OrganPolicy | None = None, *, chunk: int = CHECK_CHUNK) -> OrganCheck:
    """Validate an organ file as ``load_organ`` does, plus ``policy``, in memory independent of its size.

    Raises :class:`OrganFormatError` / :class:`OrganContentError` for a defective
    organ and :class:`PolicyError` for one outside the policy.
    """
    path = Path(path)
    header = read_header(path)
    manifest = read_manifest(path)
    if policy is not None:
        policy.check_size(header.file_size)
        policy.check_manifest(manifest)
    expected = expected_tensors(manifest)
    found = {name: e.shape for name, e in header.entries.items()}
    if set(expected) != set(found):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        raise OrganContentError(f"{path}: missing tensor(s) {missing[:5]}, unexpected tensor(s) {extra[:5]}")
    for name, shape in expected.items():
        if found[name] != shape:
            raise OrganContentError(f"{path}: tensor {name!r} has shape {list(found[name])}, expected {list(shape)}")
        if header.entries[name].dtype != manifest.dtype or not DTYPES[manifest.dtype].is_floating_point:
            raise OrganContentError(f"{path}: tensor {name!r} has dtype {header.entries[name].dtype}, manifest says {manifest.dtype}")
    count = sum(e.numel for e in header.entries.values())
    if count != manifest.num_parameters:
        raise OrganContentError(f"{path}: holds {count} parameters, manifest says {manifest.num_parameters}")
    hasher, squares, buf = hashlib.sha256(), 0.0, bytearray(chunk)
    dtype = DTYPES[manifest.dtype]
    with open(path, "rb") as fh:
        for name in sorted(header.entries):
            entry = header.entries[name]
            hash_entry_header(hasher, name, entry.dtype, entry.shape)
            fh.seek(entry.start)
            left = entry.nbytes
            while left:
                view = memoryview(buf)[: min(chunk, left)]
                if fh.readinto(view) != len(view):
                    raise OrganContentError(f"{path}: tensor {name!r}: file ended early")
                hasher.update(view)
                squares += _squared_norm(torch.frombuffer(view, dtype=dtype), path, name)
                left -= len(view)
    digest = "sha256:" + hasher.hexdigest()
    if digest != manifest.tensor_digest:
        raise OrganContentError(f"{path}: tensor digest {digest} does not match the manifest's {manifest.tensor_digest}")
    norm = math.sqrt(squares)
    if policy is not None:
        policy.check_norm(norm)
    return OrganCheck(manifest, norm)
