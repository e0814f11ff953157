"""Perplexity windows score every token at most once, and the numbers match a direct computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from organfed.shared.errors import ConfigError
from organfed.shared.evaluate import perplexity, windows
from organfed.shared.model_dir import load_model


@pytest.mark.parametrize("n,block,stride", [(100, 16, 16), (100, 16, 8), (17, 16, 16), (5, 16, 4), (64, 16, 1)])
def test_windows_score_each_token_at_most_once(n, block, stride):
    scored = []
    for begin, end, count in windows(n, block, stride):
        assert end - begin <= block and count <= end - begin - 1
        scored += range(end - count, end)
    assert len(scored) == len(set(scored)) and 0 not in scored
    if stride < block:
        assert sorted(scored) == list(range(1, n))


def test_bad_window_arguments():
    with pytest.raises(ConfigError):
        windows(10, 8, 9)


@torch.no_grad()
def test_single_window_matches_direct_loss(tiny_models):
    model = load_model(tiny_models["llama"])
    ids = torch.randint(0, 256, (40,), generator=torch.Generator().manual_seed(3))
    logits = model(ids.unsqueeze(0)).logits[0]
    direct = F.cross_entropy(logits[:-1], ids[1:]).item()
    result = perplexity(model, ids, block_size=40)
    assert result.tokens == 39
    assert math.isclose(result.nll, direct, rel_tol=1e-5)
    assert math.isclose(result.perplexity, math.exp(direct), rel_tol=1e-5)


@torch.no_grad()
def test_batching_does_not_change_the_result(tiny_models):
    model = load_model(tiny_models["gpt2"])
    ids = torch.randint(0, 256, (300,), generator=torch.Generator().manual_seed(4))
    one = perplexity(model, ids, block_size=64, stride=32, batch_size=1)
    many = perplexity(model, ids, block_size=64, stride=32, batch_size=5)
    assert one.tokens == many.tokens == 299
    assert math.isclose(one.nll, many.nll, rel_tol=1e-5)
