"""The model-family adapter interface and its registry.

An adapter knows, for one decoder-only family, where the layers, embeddings,
final norm and LM head live, how to run a slice of layers on hidden states with
the right masks and position embeddings, which config numbers decide whether an
organ fits, and how the config changes when layers are inserted. Architecture
knowledge is data (the class attributes); the few methods are the code that
cannot be data.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from organfed.shared.errors import UnsupportedFamilyError


class FamilyAdapter(ABC):
    """What organfed needs to know about one model family."""

    name: ClassVar[str]
    """Short family name used in manifests and on the command line."""
    model_types: ClassVar[tuple[str, ...]]
    """``config.model_type`` values this adapter handles."""
    num_layers_key: ClassVar[str]
    """The config attribute holding the layer count."""
    layer_prefixes: ClassVar[tuple[str, ...]]
    """Checkpoint key prefixes of the layer list, most specific first (``model.layers``)."""
    ignored_layer_keys: ClassVar[tuple[str, ...]] = ()
    """Per-layer checkpoint keys that are not parameters (legacy buffers) and are dropped."""
    architecture_keys: ClassVar[tuple[str, ...]]
    """Config attributes that must agree between an organ and its recipient."""
    allowed_layer_types: ClassVar[frozenset[str] | None] = None
    """Per-layer attention types an organ may carry; ``None``: the family has none and ``layer_types`` must be null."""
    index_dependent_keys: ClassVar[tuple[str, ...]] = ()
    """Architecture keys that, when true, make a layer compute differently at another index (so layers cannot move)."""

    # -- config ---------------------------------------------------------------------------

    def num_layers(self, config: PretrainedConfig) -> int:
        return int(getattr(config, self.num_layers_key))

    def layer_types(self, config: PretrainedConfig) -> list[str] | None:
        """Per-layer attention types when the family has them (GPT-OSS), else ``None``."""
        types = getattr(config, "layer_types", None)
        return list(types) if types is not None else None

    def layer_types_problem(self, layer_types: Sequence[str] | None, num_layers: int) -> str | None:
        """Why ``layer_types`` cannot describe ``num_layers`` layers of this family; ``None`` when they can."""
        allowed = self.allowed_layer_types
        if allowed is None:
            return None if layer_types is None else f"{self.name} layers have no layer types (must be null), got {list(layer_types)!r}"
        if layer_types is None:
            return f"{self.name} layers need one layer type each, got null"
        if len(layer_types) != num_layers:
            return f"{len(layer_types)} layer type(s) for {num_layers} layer(s)"
        unknown = sorted({repr(t) for t in layer_types if not isinstance(t, str) or t not in allowed})
        if unknown:
            return f"unknown {self.name} layer type(s) {', '.join(unknown[:5])}; allowed: {', '.join(sorted(allowed))}"
        return None

    def architecture(self, config: PretrainedConfig) -> dict[str, Any]:
        """The numbers that decide compatibility, as JSON-ready values."""
        return {key: _jsonable(getattr(config, key, None)) for key in self.architecture_keys}

    def resized_config(self, config: PretrainedConfig, num_layers: int, layer_types: Sequence[str] | None = None) -> PretrainedConfig:
        """A copy of ``config`` for a model of ``num_layers`` layers (of ``layer_types``, if the family has them)."""
        new = copy.deepcopy(config)
        setattr(new, self.num_layers_key, num_layers)
        old_types = self.layer_types(config)
        if old_types is not None:
            new.layer_types = list(layer_types) if layer_types is not None else old_types[:num_layers]
        return new

    def config_with_layers(self, config_dict: dict[str, Any], num_layers: int, layer_types: list[str] | None) -> dict[str, Any]:
        """Update a config.json dictionary for a model of ``num_layers`` layers."""
        new = dict(config_dict)
        new[self.num_layers_key] = num_layers
        if layer_types is not None:
            new["layer_types"] = list(layer_types)
        return new

    # -- modules --------------------------------------------------------------------------

    @abstractmethod
    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        """The decoder layer list of a causal LM."""

    @abstractmethod
    def build_layers(self, config: PretrainedConfig, indices: Sequence[int], layer_types: Sequence[str] | None = None) -> nn.ModuleList:
        """Fresh decoder layers that behave as layers ``indices`` of a model with ``config``.

        ``layer_types`` (one per index) overrides the config's per-layer attention types.
        """

    @abstractmethod
    def embed(self, model: PreTrainedModel, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token (and learned position) embeddings: the input of layer 0."""

    @abstractmethod
    def head(self, model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: hidden states of the last layer to logits."""

    @abstractmethod
    def run_layers(self, model: PreTrainedModel, layers: Sequence[nn.Module], hidden: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Run ``layers`` in order on ``hidden`` with ``model``'s masks and position embeddings."""

    def forward(self, model: PreTrainedModel, input_ids: torch.Tensor, layers: Sequence[nn.Module] | None = None) -> torch.Tensor:
        """Logits of ``embed -> layers -> head`` (the model's own layers when ``layers`` is None)."""
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        hidden = self.embed(model, input_ids, position_ids)
        hidden = self.run_layers(model, self.layers(model) if layers is None else layers, hidden, position_ids)
        return self.head(model, hidden)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


_REGISTRY: dict[str, FamilyAdapter] = {}


def register(adapter: FamilyAdapter) -> FamilyAdapter:
    _REGISTRY[adapter.name] = adapter
    return adapter


def supported_model_types() -> list[str]:
    return sorted(t for a in _REGISTRY.values() for t in a.model_types)


def adapter_for_model_type(model_type: str | None) -> FamilyAdapter:
    """The adapter for a ``config.model_type``; :class:`UnsupportedFamilyError` names the supported ones."""
    for adapter in _REGISTRY.values():
        if model_type in adapter.model_types:
            return adapter
    raise UnsupportedFamilyError(
        f"model type {model_type!r} is not supported; organfed handles decoder-only "
        f"{', '.join(supported_model_types())}"
    )


def adapter_by_name(name: str) -> FamilyAdapter:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnsupportedFamilyError(f"unknown family {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
