"""Perplexity of a causal LM on token ids, with a sliding window.

Windows of ``block_size`` tokens advance by ``stride``; each window scores
only the tokens the previous one did not, and never its own first token (it
has no context there), so no token is scored twice. With ``stride`` below
``block_size`` every token after the first is scored, with more context.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from organfed.shared.errors import ConfigError, DataError


@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    nll: float
    tokens: int
    seconds: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def windows(num_tokens: int, block_size: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, scored)``: window bounds and how many trailing tokens it scores."""
    if block_size < 2 or not 0 < stride <= block_size:
        raise ConfigError(f"need block_size >= 2 and 0 < stride <= block_size, got {block_size} and {stride}")
    out, prev_end, begin = [], 0, 0
    while prev_end < num_tokens:
        end = min(begin + block_size, num_tokens)
        scored = end - max(prev_end, begin + 1)
        if end - begin >= 2 and scored > 0:
            out.append((begin, end, scored))
        prev_end, begin = end, begin + stride
    return out


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, *, block_size: int, stride: int | None = None, batch_size: int = 8) -> Perplexity:
    """Perplexity of ``model`` (anything returning ``.logits`` or logits) on 1-D ``ids``."""
    if ids.numel() < 2:
        raise DataError(f"need at least 2 tokens to measure perplexity, got {ids.numel()}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    stride = stride or block_size
    device = next(model.parameters()).device
    start = time.perf_counter()
    total_nll, total_tokens = 0.0, 0
    spans = windows(ids.numel(), block_size, stride)
    for i in range(0, len(spans), batch_size):
        group = spans[i : i + batch_size]
        length = max(e - b for b, e, _ in group)
        inputs = torch.zeros(len(group), length, dtype=torch.long)
        labels = torch.full((len(group), length), -100, dtype=torch.long)
        for row, (b, e, scored) in enumerate(group):
            inputs[row, : e - b] = ids[b:e]
            labels[row, e - b - scored : e - b] = ids[e - scored : e]
        out = model(inputs.to(device))
        logits = getattr(out, "logits", out).float()
        # Right padding never leaks into scored positions: attention is causal.
        nll = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1).to(device), ignore_index=-100, reduction="sum"
        )
        total_nll += nll.item()
        total_tokens += sum(s for _, _, s in group)
    mean = total_nll / total_tokens
    return Perplexity(perplexity=math.exp(mean), nll=mean, tokens=total_tokens, seconds=time.perf_counter() - start)
