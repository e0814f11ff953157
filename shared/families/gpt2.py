"""GPT-2: ``transformer.h``, learned position embeddings, LayerNorm, LM head tied to ``wte``."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.masking_utils import create_causal_mask
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from organfed.shared.families.base import FamilyAdapter, register


class GPT2Adapter(FamilyAdapter):
    name = "gpt2"
    model_types = ("gpt2",)
    num_layers_key = "n_layer"
    # Hub checkpoints saved from GPT2Model lack the "transformer." prefix and carry the causal-mask buffers.
    layer_prefixes = ("transformer.h", "h")
    ignored_layer_keys = ("attn.bias", "attn.masked_bias")
    allowed_layer_types = None  # every layer is full attention; an organ's layer_types must be null
    architecture_keys = (
        "n_embd",
        "n_head",
        "n_inner",
        "activation_function",
        "layer_norm_epsilon",
        "scale_attn_weights",
        "scale_attn_by_inverse_layer_idx",
        "reorder_and_upcast_attn",
        "add_cross_attention",
    )
    # GPT2Attention divides by (layer_idx + 1) under this flag: a layer computes differently at another index.
    index_dependent_keys = ("scale_attn_by_inverse_layer_idx",)

    def architecture(self, config: PretrainedConfig) -> dict[str, Any]:
        numbers = super().architecture(config)
        numbers["n_inner"] = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        return numbers

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.transformer.h

    def build_layers(self, config: PretrainedConfig, indices: Sequence[int], layer_types: Sequence[str] | None = None) -> nn.ModuleList:
        config = copy.deepcopy(config)
        return nn.ModuleList(GPT2Block(config, layer_idx=i) for i in indices)

    def embed(self, model: PreTrainedModel, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        t = model.transformer
        return t.drop(t.wte(input_ids) + t.wpe(position_ids))

    def head(self, model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
        return model.lm_head(model.transformer.ln_f(hidden))

    def run_layers(self, model: PreTrainedModel, layers: Sequence[nn.Module], hidden: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        mask = create_causal_mask(
            config=model.config, inputs_embeds=hidden, attention_mask=None, cache=None, position_ids=position_ids
        )
        for layer in layers:
            hidden = layer(hidden, None, mask, position_ids=position_ids)
        return hidden


register(GPT2Adapter())
