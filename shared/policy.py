"""What a coordinator accepts: an :class:`OrganPolicy` (applied by :mod:`organfed.shared.content_check`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from organfed.shared.errors import ConfigError, PolicyError
from organfed.shared.manifest import Manifest
from organfed.shared.organ_rules import architecture_mismatch
from organfed.shared.safetensors_io import DTYPES


@dataclass(frozen=True)
class OrganPolicy:
    """Expectations for an incoming organ; ``None`` means "any".

    ``architecture``, when given, must equal the organ's exactly (the rule of
    :func:`organfed.shared.surgery.check_compatible`): no key more, none less.
    """

    family: str | None = None
    layers: tuple[int, int] | None = None
    base_fingerprint: str | None = None
    architecture: Mapping[str, Any] | None = None
    dtype: str | None = None
    max_norm: float | None = None
    max_bytes: int | None = None
    model_type: str | None = None
    layer_types: tuple[str, ...] | None = None
    source_num_layers: int | None = None

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))
            if len(self.layers) != 2 or not all(type(v) is int for v in self.layers) or not 0 <= self.layers[0] < self.layers[1]:
                raise ConfigError(f"policy field 'layers' must be a half-open range (start, end), got {self.layers!r}")
        if self.base_fingerprint is not None and not self.base_fingerprint.startswith("sha256:"):
            raise ConfigError(f"policy field 'base_fingerprint' must look like 'sha256:<hex>', got {self.base_fingerprint!r}")
        if self.architecture is not None:
            if not isinstance(self.architecture, Mapping):
                raise ConfigError(f"policy field 'architecture' must be a mapping, got {self.architecture!r}")
            object.__setattr__(self, "architecture", dict(self.architecture))
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"policy field 'dtype' must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.max_norm is not None and not (isinstance(self.max_norm, (int, float)) and 0 < self.max_norm < math.inf):
            raise ConfigError(f"policy field 'max_norm' must be a positive finite number, got {self.max_norm!r}")
        if self.max_bytes is not None and not (type(self.max_bytes) is int and self.max_bytes > 0):
            raise ConfigError(f"policy field 'max_bytes' must be a positive integer, got {self.max_bytes!r}")
        if self.model_type is not None and not (isinstance(self.model_type, str) and self.model_type):
            raise ConfigError(f"policy field 'model_type' must be a non-empty string, got {self.model_type!r}")
        if self.layer_types is not None:
            if not isinstance(self.layer_types, (list, tuple)) or not all(isinstance(t, str) for t in self.layer_types):
                raise ConfigError(f"policy field 'layer_types' must be a list of strings, got {self.layer_types!r}")
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
            if self.layers is not None and len(self.layer_types) != self.layers[1] - self.layers[0]:
                raise ConfigError(
                    f"policy field 'layer_types' must give one type per layer of {self.layers}, got {self.layer_types!r}"
                )
        if self.source_num_layers is not None and not (
            type(self.source_num_layers) is int and self.source_num_layers >= (self.layers[1] if self.layers else 1)
        ):
            raise ConfigError(
                f"policy field 'source_num_layers' must be an integer covering the layers, got {self.source_num_layers!r}"
            )

    @classmethod
    def like(cls, manifest: Manifest, *, max_norm: float | None = None, max_bytes: int | None = None) -> OrganPolicy:
        """The policy that accepts organs shaped like ``manifest`` (the spec a coordinator announced)."""
        return cls(family=manifest.family, model_type=manifest.model_type, layers=manifest.source_layers,
                   source_num_layers=manifest.source_num_layers, layer_types=manifest.layer_types,
                   base_fingerprint=manifest.base_fingerprint, architecture=dict(manifest.architecture),
                   dtype=manifest.dtype, max_norm=max_norm, max_bytes=max_bytes)

    def check_size(self, nbytes: int) -> None:
        if self.max_bytes is not None and nbytes > self.max_bytes:
            raise PolicyError(f"organ of {nbytes} bytes exceeds the limit of {self.max_bytes}")

    def check_manifest(self, manifest: Manifest) -> None:
        """Raise :class:`PolicyError` naming the first field that differs from the expectation."""
        found_types = tuple(manifest.layer_types) if manifest.layer_types is not None else None
        fields = (
            ("family", self.family, manifest.family),
            ("model_type", self.model_type, manifest.model_type),
            ("dtype", self.dtype, manifest.dtype),
            ("base_fingerprint", self.base_fingerprint, manifest.base_fingerprint),
            ("layers", self.layers, manifest.source_layers),
            ("source_num_layers", self.source_num_layers, manifest.source_num_layers),
        )
        for name, wanted, found in fields:
            if wanted is not None and found != wanted:
                raise PolicyError(f"organ {name} is {found!r}, the policy expects {wanted!r}")
        # null layer types are "any" in a policy; a family without them is held to null by check_entries
        if self.layer_types is not None and found_types != self.layer_types:
            raise PolicyError(f"organ layer_types is {manifest.layer_types!r}, the policy expects {list(self.layer_types)!r}")
        if self.architecture is not None:
            mismatch = architecture_mismatch(manifest.architecture, self.architecture)
            if mismatch is not None:
                raise PolicyError(f"organ architecture {mismatch.key} is {mismatch.found}, the policy expects {mismatch.expected}")

    def check_norm(self, norm: float) -> None:
        if self.max_norm is not None and not norm <= self.max_norm:
            raise PolicyError(f"organ norm {norm:.6g} exceeds the limit of {self.max_norm:g}")
