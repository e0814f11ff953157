"""Aggregation of site organs into one: FedAvg and robust alternatives.

Each method maps the round's accepted organs (all of one spec) to a new set of
tensors, key by key, so memory stays at one tensor per site at a time. The
robust methods bound what one dishonest site can do: the coordinate-wise
median and trimmed mean ignore extreme values, the norm-clipped mean bounds
each site's update (its change from the round's starting organ).
``select-best`` and ``per-site`` keep whole organs and live in the round loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import torch

from organfed.shared.errors import ConfigError
from organfed.shared.organ import Organ


class Method(str, Enum):
    FEDAVG = "fedavg"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed-mean"
    CLIPPED_MEAN = "clipped-mean"
    SELECT_BEST = "select-best"
    PER_SITE = "per-site"

    @property
    def averages(self) -> bool:
        """Whether the method merges tensors (the others keep whole organs)."""
        return self not in (Method.SELECT_BEST, Method.PER_SITE)


@dataclass(frozen=True)
class Contribution:
    """One accepted organ and how much data stands behind it."""

    site: str
    organ: Organ
    tokens: int


def _stack(contributions: Sequence[Contribution], key: str) -> torch.Tensor:
    return torch.stack([c.organ.tensors[key].float() for c in contributions])


def _fedavg(contributions: Sequence[Contribution], key: str, start: Organ | None, options: dict) -> torch.Tensor:
    weights = options[WEIGHTS_KEY]
    stacked = _stack(contributions, key)
    return torch.tensordot(weights, stacked, dims=1)


def _median(contributions: Sequence[Contribution], key: str, start: Organ | None, options: dict) -> torch.Tensor:
    ordered = _stack(contributions, key).sort(dim=0).values
    n = ordered.shape[0]
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _trimmed_mean(contributions: Sequence[Contribution], key: str, start: Organ | None, options: dict) -> torch.Tensor:
    ordered = _stack(contributions, key).sort(dim=0).values
    cut = options[TRIM_KEY]
    return ordered[cut : ordered.shape[0] - cut].mean(dim=0)


CLIP_KEY, WEIGHTS_KEY, TRIM_KEY = "scales", "weights", "cut"


def update_norms(contributions: Sequence[Contribution], start: Organ) -> list[float]:
    """The global L2 norm of each site's update (organ minus the round's starting organ)."""
    norms = []
    for c in contributions:
        total = sum(float((c.organ.tensors[k].float() - start.tensors[k].float()).pow(2).sum()) for k in start.tensors)
        norms.append(total**0.5)
    return norms


def _clipped_mean(contributions: Sequence[Contribution], key: str, start: Organ | None, options: dict) -> torch.Tensor:
    scales = options[CLIP_KEY]
    if start is None:
        raise ConfigError("clipped-mean needs the round's starting organ")
    base = start.tensors[key].float()
    deltas = [(c.organ.tensors[key].float() - base) * s for c, s in zip(contributions, scales, strict=True)]
    return base + torch.stack(deltas).mean(dim=0)


def trimmed_count(n: int, fraction: float) -> int:
    """How many values the trimmed mean drops at each end: at least one once there are three, never all."""
    if fraction <= 0 or n < 3:
        return 0
    return min(max(1, round(n * fraction)), (n - 1) // 2)


_METHODS: dict[Method, Callable[..., torch.Tensor]] = {
    Method.FEDAVG: _fedavg,
    Method.MEDIAN: _median,
    Method.TRIMMED_MEAN: _trimmed_mean,
    Method.CLIPPED_MEAN: _clipped_mean,
}


def aggregate(
    method: Method,
    contributions: Sequence[Contribution],
    *,
    start: Organ | None = None,
    trim_fraction: float = 0.2,
    clip_norm: float | None = None,
) -> dict[str, torch.Tensor]:
    """Merge the organs of ``contributions`` with ``method``; tensors come back in the organs' dtype.

    ``clip_norm`` bounds each update's L2 norm for ``clipped-mean``; by default it is the median
    update norm of the round, so an honest majority sets the bound.
    """
    if not method.averages:
        raise ConfigError(f"{method.value} keeps whole organs; it does not merge tensors")
    if not contributions:
        raise ConfigError("nothing to aggregate")
    options: dict = {TRIM_KEY: trimmed_count(len(contributions), trim_fraction)}
    tokens = [c.tokens for c in contributions]
    if any(t < 0 for t in tokens):
        raise ConfigError(f"token counts must not be negative, got {tokens}")
    total = sum(tokens)
    options[WEIGHTS_KEY] = torch.tensor([t / total for t in tokens] if total > 0 else [1 / len(tokens)] * len(tokens))
    if method is Method.CLIPPED_MEAN:
        if start is None:
            raise ConfigError("clipped-mean needs the round's starting organ")
        norms = update_norms(contributions, start)
        bound = clip_norm if clip_norm is not None else sorted(norms)[len(norms) // 2]
        options[CLIP_KEY] = [min(1.0, bound / n) if n > 0 else 1.0 for n in norms]
    template = contributions[0].organ
    return {
        key: _METHODS[method](contributions, key, start, options).to(tensor.dtype)
        for key, tensor in template.tensors.items()
    }
