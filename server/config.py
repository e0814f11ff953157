"""The coordinator's run configuration, parsed once from Flower's flat ``run_config``.

Keys are the field names in kebab case (``num-rounds``); values are TOML
scalars. Lists of paths are one string separated by commas; evaluation sets
are ``name=path`` pairs separated by commas. Every error names the key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from organfed.client.config import TrainConfig, TrainMode
from organfed.server.aggregate import Method
from organfed.shared.errors import ConfigError
from organfed.shared.organ import LayerRange

TRAIN_PREFIX = "train-"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A run id names a store folder and is bound into every envelope."""


class FinalMode(str, Enum):
    """How the result goes into the recipient: ``auto`` follows the training mode (see selection.layout)."""

    AUTO = "auto"
    REPLACE = "replace"
    INSERT = "insert"
_TRAIN_KEYS = ("steps", "batch_size", "block_size", "learning_rate", "warmup_steps", "grad_accum", "max_grad_norm", "seed",
               "val_fraction", "weight_decay")
_OPTIONAL_TRAIN_KEYS = ("steps", "max_grad_norm")


@dataclass(frozen=True)
class ServerConfig:
    """What the coordinator needs for one federated run."""

    run_id: str
    work_dir: Path
    base_model: Path
    key_dir: Path
    trust_dir: Path
    num_rounds: int = 2
    method: Method = Method.FEDAVG
    mode: TrainMode = TrainMode.IN_SITU
    layers: str = ""
    min_sites: int = 2
    wait_for_sites: int = 0
    round_timeout: float = 900.0
    connect_timeout: float = 120.0
    trim_fraction: float = 0.2
    clip_norm: float = 0.0
    max_norm_ratio: float = 10.0
    max_update_ratio: float = 1.0
    val_data: str = ""
    eval_data: str = ""
    eval_max_tokens: int = 20_000
    final_mode: FinalMode = FinalMode.AUTO
    final_position: int = -1
    per_site_positions: str = ""
    device: str = "auto"
    passphrase_file: str = ""
    simulation_sites: str = ""
    train: TrainConfig = TrainConfig()

    def __post_init__(self) -> None:
        if not RUN_ID.match(self.run_id):
            raise ConfigError(f"run-id {self.run_id!r} must be 1-128 letters, digits, '.', '_' or '-'")
        if self.num_rounds < 1:
            raise ConfigError(f"num-rounds must be >= 1, got {self.num_rounds}")
        if self.min_sites < 1:
            raise ConfigError(f"min-sites must be >= 1, got {self.min_sites}")
        if not 0 <= self.trim_fraction < 0.5:
            raise ConfigError(f"trim-fraction must be in [0, 0.5), got {self.trim_fraction}")
        if min(self.max_norm_ratio, self.max_update_ratio, self.clip_norm) < 0:
            raise ConfigError("max-norm-ratio, max-update-ratio and clip-norm must be >= 0 (0: off)")
        if self.method is Method.PER_SITE and self.final_mode is FinalMode.REPLACE:
            raise ConfigError("per-site keeps one organ per site, composed at distinct positions: use final-mode insert (or auto)")
        if self.method is Method.SELECT_BEST and not self.val_data:
            raise ConfigError("method select-best needs val-data: the coordinator's own validation text")
        self.layer_range  # validates the string
        self.eval_sets
        self.site_positions

    @property
    def layer_range(self) -> LayerRange | None:
        return LayerRange.parse(self.layers) if self.layers else None

    @property
    def val_paths(self) -> list[Path]:
        return [Path(p) for p in self.val_data.split(",") if p]

    @property
    def eval_sets(self) -> dict[str, list[Path]]:
        """Named evaluation sets for the report (``name=path`` pairs)."""
        out: dict[str, list[Path]] = {}
        for item in filter(None, self.eval_data.split(",")):
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"eval-data entries must be name=path, got {item!r}")
            out.setdefault(name, []).append(Path(path))
        return out

    @property
    def site_positions(self) -> dict[str, int]:
        """``site=position`` pairs for per-site composition."""
        out = {}
        for item in filter(None, self.per_site_positions.split(",")):
            name, sep, pos = item.partition("=")
            if not sep or not pos.lstrip("-").isdigit():
                raise ConfigError(f"per-site-positions entries must be site=position, got {item!r}")
            out[name] = int(pos)
        return out

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> ServerConfig:
        """Parse Flower's flat ``run_config`` (unknown keys are refused, naming them)."""
        known = {f.name.replace("_", "-"): f for f in fields(cls) if f.name != "train"}
        hints, train_hints = typing.get_type_hints(cls), typing.get_type_hints(TrainConfig)
        values: dict[str, Any] = {}
        train: dict[str, Any] = {"mode": None}
        for key, raw in run_config.items():
            if key.startswith(TRAIN_PREFIX):
                name = key[len(TRAIN_PREFIX):].replace("-", "_")
                if name not in _TRAIN_KEYS:
                    raise ConfigError(f"unknown run-config key {key!r}; training keys: {', '.join(TRAIN_PREFIX + k.replace('_', '-') for k in _TRAIN_KEYS)}")
                train[name] = _convert(key, raw, train_hints[name])
            elif key in known:
                values[known[key].name] = _convert(key, raw, hints[known[key].name])
            else:
                raise ConfigError(f"unknown run-config key {key!r}")
        missing = [k for k, f in known.items() if f.default is dataclasses.MISSING and f.name not in values]
        if missing:
            raise ConfigError(f"run-config lacks {', '.join(missing)}")
        train["mode"] = values.get("mode", TrainMode.IN_SITU)
        train["device"] = values.get("device", "auto")
        for name in _OPTIONAL_TRAIN_KEYS:  # 0 stands for "not set" (TOML has no null)
            if train.get(name) == 0:
                train[name] = None
        return cls(**values, train=TrainConfig(**train))

    def to_run_config(self) -> dict[str, Any]:
        """The flat ``run_config`` that parses back to this config."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "train":
                for name in _TRAIN_KEYS:
                    v = getattr(value, name)
                    out[TRAIN_PREFIX + name.replace("_", "-")] = 0.0 if v is None else v
            else:
                out[f.name.replace("_", "-")] = value.value if isinstance(value, Enum) else str(value) if isinstance(value, Path) else value
        return out


def _convert(key: str, raw: Any, kind: Any) -> Any:
    """``raw`` as the (resolved) annotation ``kind``; a union tries each member in turn."""
    kinds = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    for k in kinds:
        if k is type(None):
            continue
        try:
            if isinstance(k, type) and issubclass(k, Enum):
                return k(raw)
            if k is Path:
                if not isinstance(raw, str) or not raw:
                    raise ValueError
                return Path(raw)
            if k is bool:
                if isinstance(raw, bool):
                    return raw
                raise ValueError
            if k is int:
                if isinstance(raw, bool) or not (isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer())):
                    raise ValueError
                return int(raw)
            if k is float:
                if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                    raise ValueError
                return float(raw)
            if k is str:
                if not isinstance(raw, str):
                    raise ValueError
                return raw
        except ValueError:
            continue
    raise ConfigError(f"run-config {key!r} has a bad value {raw!r}")

