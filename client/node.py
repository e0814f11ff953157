"""A site's node configuration, parsed once from Flower's ``node_config``.

Keys (TOML scalars): ``site-name``, ``model-dir``, ``data`` (paths separated by
commas), ``key-dir``, ``trust-dir`` (must hold the coordinator's identity),
``state-dir`` (replay cache, token cache, scratch), and optionally ``device``,
``passphrase-file`` and ``coordinator-key-id`` (accept instructions only from
that coordinator, when the trust directory holds more than one identity).

Under Flower's simulation engine a virtual node's ``node_config`` holds only
``partition-id``; its configuration is then read from the directory that the
run config's ``simulation-sites`` names (written by
:func:`organfed.server.simulation.prepare_sites`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from organfed.shared.errors import ConfigError

_REQUIRED = ("site-name", "model-dir", "data", "key-dir", "trust-dir", "state-dir")
_OPTIONAL = ("device", "passphrase-file", "coordinator-key-id")


@dataclass(frozen=True)
class NodeConfig:
    site_name: str
    model_dir: Path
    data: tuple[Path, ...]
    key_dir: Path
    trust_dir: Path
    state_dir: Path
    device: str = "auto"
    passphrase_file: Path | None = None
    coordinator_key_id: str | None = None

    @classmethod
    def from_node_config(cls, node_config: dict[str, Any]) -> NodeConfig:
        missing = [k for k in _REQUIRED if not node_config.get(k)]
        if missing:
            raise ConfigError(f"node-config lacks {', '.join(missing)} (a SuperNode of organfed needs {', '.join(_REQUIRED)})")
        unknown = sorted(set(node_config) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise ConfigError(f"unknown node-config key(s): {', '.join(unknown)}")
        bad = [k for k in node_config if not isinstance(node_config[k], str)]
        if bad:
            raise ConfigError(f"node-config {', '.join(bad)} must be quoted strings")
        return cls(
            site_name=node_config["site-name"],
            model_dir=Path(node_config["model-dir"]),
            data=tuple(Path(p) for p in node_config["data"].split(",") if p),
            key_dir=Path(node_config["key-dir"]),
            trust_dir=Path(node_config["trust-dir"]),
            state_dir=Path(node_config["state-dir"]),
            device=node_config.get("device", "auto"),
            passphrase_file=Path(node_config["passphrase-file"]) if node_config.get("passphrase-file") else None,
            coordinator_key_id=node_config.get("coordinator-key-id") or None,
        )

    @classmethod
    def for_node(cls, node_config: dict[str, Any], run_config: dict[str, Any]) -> NodeConfig:
        """The configuration of this node: its own ``node_config``, or a simulated site's file."""
        if "partition-id" not in node_config:
            return cls.from_node_config(node_config)
        sites = run_config.get("simulation-sites")
        if not sites:
            raise ConfigError("a simulated node needs the run config's simulation-sites directory (organfed simulate writes it)")
        path = Path(str(sites)) / f"{int(node_config['partition-id'])}.json"
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read simulated site configuration {path}: {exc}") from None
        return cls.from_node_config(values)

    def to_dict(self) -> dict[str, str]:
        """The ``node_config`` mapping that parses back to this configuration."""
        values = {
            "site-name": self.site_name, "model-dir": str(self.model_dir), "data": ",".join(map(str, self.data)),
            "key-dir": str(self.key_dir), "trust-dir": str(self.trust_dir), "state-dir": str(self.state_dir),
            "device": self.device,
        }
        if self.passphrase_file:
            values["passphrase-file"] = str(self.passphrase_file)
        if self.coordinator_key_id:
            values["coordinator-key-id"] = self.coordinator_key_id
        return values

    def to_node_config(self) -> str:
        """The ``--node-config`` string for ``flower-supernode`` (TOML literal strings)."""
        values = self.to_dict()
        for key, value in values.items():
            if "'" in value or " " in value:
                raise ConfigError(f"node-config {key} {value!r} may not contain quotes or spaces")
        return " ".join(f"{k}='{v}'" for k, v in values.items())
