"""A Hugging Face model directory on local disk, read shard by shard.

:func:`open_model_dir` checks the directory, finds its safetensors shards and
family adapter, and maps each checkpoint key to its shard, without loading a
single weight. :func:`load_model` loads the whole model when that is needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from organfed.shared.errors import ModelDirError, OrganFormatError
from organfed.shared.families import FamilyAdapter, adapter_for_model_type
from organfed.shared.safetensors_io import SafetensorsHeader, TensorEntry, read_header

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")
_LAYER_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


@dataclass(frozen=True)
class ModelDir:
    """A checked model directory: its config, adapter, shards and the key-to-shard map."""

    path: Path
    config: PretrainedConfig
    config_dict: dict[str, Any]
    adapter: FamilyAdapter
    shards: tuple[SafetensorsHeader, ...]
    layer_prefix: str

    @property
    def num_layers(self) -> int:
        return self.adapter.num_layers(self.config)

    def entry(self, key: str) -> tuple[SafetensorsHeader, TensorEntry]:
        for shard in self.shards:
            if key in shard.entries:
                return shard, shard.entries[key]
        raise ModelDirError(f"{self.path}: no tensor {key!r}")

    def layer_of(self, key: str) -> tuple[int, str] | None:
        """``(layer index, key suffix)`` for a per-layer key, else ``None``.

        A key under the layer list that is not ``<prefix>.<index>.<name>`` raises :class:`ModelDirError`
        (:func:`open_model_dir` checks every key, so a checked directory never does).
        """
        return _layer_of(self.path, self.layer_prefix, key)

    def layer_entries(self, index: int) -> dict[str, tuple[SafetensorsHeader, TensorEntry]]:
        """The parameters of layer ``index`` keyed by suffix (legacy buffers left out)."""
        found = {}
        for shard in self.shards:
            for key, entry in shard.entries.items():
                where = self.layer_of(key)
                if where and where[0] == index and where[1] not in self.adapter.ignored_layer_keys:
                    found[where[1]] = (shard, entry)
        if not found:
            raise ModelDirError(f"{self.path}: layer {index} has no tensors")
        return found


def _layer_of(path: Path, prefix: str, key: str) -> tuple[int, str] | None:
    head = prefix + "."
    if not key.startswith(head):
        return None
    index, _, suffix = key[len(head):].partition(".")
    if not _LAYER_INDEX.fullmatch(index) or not suffix:
        raise ModelDirError(f"{path}: tensor {key!r} lies under {prefix} but is not named {prefix}.<index>.<name>")
    return int(index), suffix


def read_config_dict(path: Path) -> dict[str, Any]:
    cfg_path = path / "config.json"
    if not path.is_dir():
        raise ModelDirError(f"{path} is not a directory")
    if not cfg_path.is_file():
        raise ModelDirError(f"{path} has no config.json: not a Hugging Face model directory")
    try:
        return json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{cfg_path} is not valid JSON: {exc}") from exc


def shard_paths(path: Path) -> list[Path]:
    """The safetensors shards of a model directory, in index order."""
    index = path / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelDirError(f"{index} is malformed: {exc}") from exc
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelDirError(f"{index} is malformed: weight_map must be a non-empty object")
        names = sorted({n for n in weight_map.values() if isinstance(n, str)})
        bad = [n for n in weight_map.values() if not _plain_file_name(n)]
        if bad:
            raise ModelDirError(f"{index} lists shard {bad[0]!r}: shards must be plain file names in the directory")
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise ModelDirError(f"{path}: shard(s) listed in {INDEX_NAME} are missing: {', '.join(missing)}")
        return [path / n for n in names]
    if (path / SINGLE_NAME).is_file():
        return [path / SINGLE_NAME]
    pickled = [n for n in _PICKLE_WEIGHTS if (path / n).exists()]
    if pickled:
        raise ModelDirError(
            f"{path} holds only pickle weights ({pickled[0]}); organfed never unpickles files. Convert it on a "
            "machine that trusts it: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out)"
        )
    raise ModelDirError(f"{path} has no {SINGLE_NAME} or {INDEX_NAME}")


def _plain_file_name(name: object) -> bool:
    """A file name with no directory part: no '/', no '\\', not '.' or '..', no NUL."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def open_model_dir(path: Path | str) -> ModelDir:
    """Check a model directory and map its weights, reading headers only."""
    path = Path(path)
    config_dict = read_config_dict(path)
    adapter = adapter_for_model_type(config_dict.get("model_type"))
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelDirError(f"{path}: cannot read its config: {exc}") from exc
    try:
        shards = tuple(read_header(p) for p in shard_paths(path))
    except OrganFormatError as exc:
        raise ModelDirError(str(exc)) from exc
    keys = [k for s in shards for k in s.entries]
    seen: dict[str, Path] = {}
    for shard in shards:
        for key in shard.entries:
            if key in seen:
                raise ModelDirError(f"{path}: tensor {key!r} is in both {seen[key].name} and {shard.path.name}")
            seen[key] = shard.path
    if any(k.endswith(("_blocks", "_scales")) for k in keys):
        raise ModelDirError(
            f"{path} stores quantized (MXFP4) expert weights; dequantize it first: load it with "
            "transformers and save_pretrained it in bfloat16"
        )
    prefix = next((p for p in adapter.layer_prefixes if any(k.startswith(p + ".") for k in keys)), None)
    if prefix is None:
        raise ModelDirError(f"{path}: no layer weights under {' or '.join(adapter.layer_prefixes)}")
    for key in keys:
        _layer_of(path, prefix, key)
    return ModelDir(path, config, config_dict, adapter, shards, prefix)


def context_length(config: PretrainedConfig) -> int:
    """The longest sequence the model's positions allow."""
    for key in ("n_positions", "max_position_embeddings"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ModelDirError(f"{config.model_type} config names no context length")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(path: Path | str, *, device: str = "cpu", dtype: torch.dtype | None = torch.float32) -> PreTrainedModel:
    """Load a causal LM from a local directory (never the hub) in evaluation mode."""
    md = open_model_dir(path)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if md.adapter.name == "gpt-oss":
        kwargs["attn_implementation"] = "eager"
    model = AutoModelForCausalLM.from_pretrained(md.path, **kwargs)
    return model.to(resolve_device(device)).eval()
