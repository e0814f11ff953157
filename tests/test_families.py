"""Adapters: a slice of layers run through the adapter equals the same slice of the full forward pass."""

from __future__ import annotations

import pytest
import torch

from organfed.shared.errors import UnsupportedFamilyError
from organfed.shared.families import adapter_for_model_type
from organfed.shared.model_dir import load_model, open_model_dir


def hidden_states(model, ids):
    out = model(ids, output_hidden_states=True)
    return out.hidden_states


@torch.no_grad()
def test_full_forward_matches_model(tiny_models, family):
    model = load_model(tiny_models[family])
    adapter = open_model_dir(tiny_models[family]).adapter
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(adapter.forward(model, ids), model(ids).logits, atol=1e-6, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("start,end", [(0, 2), (2, 5), (4, 6)])
def test_slice_equals_full_pass(tiny_models, family, start, end):
    # Prepare
    model = load_model(tiny_models[family])
    adapter = open_model_dir(tiny_models[family]).adapter
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(24).unsqueeze(0)
    layers = adapter.layers(model)
    # Execute: embeddings, then layers [0, start) and [start, end) separately
    h = adapter.embed(model, ids, positions)
    h_start = adapter.run_layers(model, list(layers)[:start], h, positions)
    h_end = adapter.run_layers(model, list(layers)[start:end], h_start, positions)
    # Assert: equal to the model's own hidden state after layer `end`
    reference = hidden_states(model, ids)
    if end == len(layers):  # HF applies the final norm to the last hidden state
        assert torch.allclose(adapter.head(model, h_end), model(ids).logits, atol=1e-6, rtol=0)
    else:
        assert torch.allclose(h_end, reference[end], atol=1e-6, rtol=0)


def test_gpt_oss_slices_use_their_own_layer_types(tiny_models):
    model = load_model(tiny_models["gpt-oss"])
    kinds = [layer.self_attn.layer_type for layer in model.model.layers]
    assert set(kinds) == {"sliding_attention", "full_attention"}


@pytest.mark.parametrize("model_type", ["bert", "t5", "mamba", None])
def test_other_families_are_refused_by_name(model_type):
    with pytest.raises(UnsupportedFamilyError, match="gpt2.*gpt_oss.*llama|supported"):
        adapter_for_model_type(model_type)
