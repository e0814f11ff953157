"""The organ manifest: what an organ is, where it came from, and how it was trained.

It travels as JSON in the organ's safetensors metadata under :data:`METADATA_KEY`.
:meth:`Manifest.from_json` validates every field and raises
:class:`OrganFormatError` naming the bad one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from organfed.shared.errors import OrganFormatError
from organfed.shared.version import __version__

FORMAT = "organfed-organ"
FORMAT_VERSION = 1
METADATA_KEY = "organfed.manifest"
MAX_MANIFEST_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Manifest:
    """Everything an organ file says about itself (``training``/``privacy`` filled by later stages)."""

    family: str
    model_type: str
    architecture: dict[str, Any]
    layer_types: list[str] | None
    source_layers: tuple[int, int]
    source_num_layers: int
    base_fingerprint: str
    dtype: str
    tensor_digest: str
    num_parameters: int
    organfed_version: str = __version__
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    training: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def num_layers(self) -> int:
        return self.source_layers[1] - self.source_layers[0]

    def to_json(self) -> str:
        data = asdict(self)
        data["source_layers"] = list(self.source_layers)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        if len(text) > MAX_MANIFEST_BYTES:
            raise OrganFormatError(f"manifest of {len(text)} bytes exceeds {MAX_MANIFEST_BYTES}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OrganFormatError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise OrganFormatError("manifest is not a JSON object")
        if data.get("format") != FORMAT:
            raise OrganFormatError(f"not an organfed organ (format {data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise OrganFormatError(
                f"organ format version {data.get('format_version')!r} is not supported (this organfed reads {FORMAT_VERSION})"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise OrganFormatError(f"manifest has unknown field(s): {', '.join(unknown)}")
        missing = sorted(f.name for f in fields(cls) if f.name not in data and f.name not in ("training", "privacy"))
        if missing:
            raise OrganFormatError(f"manifest lacks field(s): {', '.join(missing)}")
        _check_types(data)
        data["source_layers"] = tuple(data["source_layers"])
        return cls(**data)


def _check_types(data: dict[str, Any]) -> None:
    def need(name: str, ok: bool, what: str) -> None:
        if not ok:
            raise OrganFormatError(f"manifest field {name!r} must be {what}, got {data.get(name)!r}")

    for name in ("family", "model_type", "base_fingerprint", "dtype", "tensor_digest", "organfed_version", "created_at"):
        need(name, isinstance(data[name], str) and 0 < len(data[name]) <= 256, "a non-empty string")
    need("architecture", isinstance(data["architecture"], dict), "an object")
    types = data["layer_types"]
    need("layer_types", types is None or (isinstance(types, list) and all(isinstance(t, str) for t in types)), "null or a list of strings")
    rng = data["source_layers"]
    need(
        "source_layers",
        isinstance(rng, list) and len(rng) == 2 and all(type(v) is int for v in rng) and 0 <= rng[0] < rng[1],
        "a half-open range [start, end) with 0 <= start < end",
    )
    need("source_num_layers", type(data["source_num_layers"]) is int and data["source_num_layers"] >= rng[1], f"an integer >= {rng[1]}")
    need("num_parameters", type(data["num_parameters"]) is int and data["num_parameters"] > 0, "a positive integer")
    need("tensor_digest", data["tensor_digest"].startswith("sha256:"), "'sha256:<hex>'")
    if types is not None:
        need("layer_types", len(types) == rng[1] - rng[0], f"one type per layer ({rng[1] - rng[0]})")
    for name in ("training", "privacy"):
        need(name, data.get(name) is None or isinstance(data[name], dict), "null or an object")
