"""GPT-OSS: Llama-like layout plus mixture of experts (3-D expert weights), attention sinks,
and sliding or full attention per ``config.layer_types``; it runs with eager attention."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssDecoderLayer

from organfed.shared.families.base import register
from organfed.shared.families.llama import LlamaAdapter


class GptOssAdapter(LlamaAdapter):
    name = "gpt-oss"
    model_types = ("gpt_oss",)
    layer_class = GptOssDecoderLayer
    allowed_layer_types = frozenset({"sliding_attention", "full_attention"})
    architecture_keys = (
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "num_local_experts",
        "num_experts_per_tok",
        "rms_norm_eps",
        "attention_bias",
        "sliding_window",
        "swiglu_limit",
        "rope_parameters",
    )

    def masks(self, model: PreTrainedModel, hidden: torch.Tensor, position_ids: torch.Tensor) -> dict[str | None, torch.Tensor | None]:
        kwargs = dict(config=model.config, inputs_embeds=hidden, attention_mask=None, cache=None, position_ids=position_ids)
        full = create_causal_mask(**kwargs)
        return {None: full, "full_attention": full, "sliding_attention": create_sliding_window_causal_mask(**kwargs)}


register(GptOssAdapter())
