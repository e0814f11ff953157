"""Llama (TinyLlama, Llama-2/3): ``model.layers``, rotary positions, grouped-query attention, RMSNorm."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from organfed.shared.families.base import FamilyAdapter, register


class LlamaAdapter(FamilyAdapter):
    name = "llama"
    model_types = ("llama",)
    num_layers_key = "num_hidden_layers"
    layer_prefixes = ("model.layers",)
    layer_class: type[nn.Module] = LlamaDecoderLayer
    allowed_layer_types = None  # every layer is full attention; an organ's layer_types must be null
    architecture_keys = (
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "hidden_act",
        "rms_norm_eps",
        "attention_bias",
        "mlp_bias",
        "rope_parameters",
    )

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.model.layers

    def build_layers(self, config: PretrainedConfig, indices: Sequence[int], layer_types: Sequence[str] | None = None) -> nn.ModuleList:
        config = copy.deepcopy(config)
        if layer_types is not None:
            types = list(self.layer_types(config) or [])
            types += ["full_attention"] * (max(indices, default=-1) + 1 - len(types))
            for index, kind in zip(indices, layer_types, strict=True):
                types[index] = kind
            config.layer_types = types
        return nn.ModuleList(self.layer_class(config, i) for i in indices)

    def embed(self, model: PreTrainedModel, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return model.model.embed_tokens(input_ids)

    def head(self, model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
        return model.lm_head(model.model.norm(hidden))

    def masks(self, model: PreTrainedModel, hidden: torch.Tensor, position_ids: torch.Tensor) -> dict[str | None, torch.Tensor | None]:
        """Attention masks by layer type (``None``: a family without per-layer types)."""
        mask = create_causal_mask(
            config=model.config, inputs_embeds=hidden, attention_mask=None, cache=None, position_ids=position_ids
        )
        return {None: mask, "full_attention": mask}

    def run_layers(self, model: PreTrainedModel, layers: Sequence[nn.Module], hidden: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        position_embeddings = model.model.rotary_emb(hidden, position_ids)
        masks = self.masks(model, hidden, position_ids)
        for layer in layers:
            hidden = layer(
                hidden,
                attention_mask=masks[getattr(layer.self_attn, "layer_type", None)],
                position_ids=position_ids,
                position_embeddings=position_embeddings,
            )
        return hidden


register(LlamaAdapter())
