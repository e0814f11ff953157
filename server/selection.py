"""Where organs go in the recipient, and measuring a recipient in memory (for select-best and the report).

The placement rule: an organ replaces the layers it came from, in either
training mode; ``per-site`` organs are inserted at distinct positions.
``final-mode``/``final-position`` override it. (A wrapper organ gains most on
its own domain at position 0, but there it wrecks everything else: see the
position sweep in docs/benchmarks.md; at its source position it gains less and
forgets least, which suits an average of several sites' organs.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedModel

from organfed.server.aggregate import Contribution, Method
from organfed.server.config import FinalMode
from organfed.shared.data import load_token_ids, load_tokenizer
from organfed.shared.evaluate import perplexity
from organfed.shared.model_dir import ModelDir, context_length, load_model
from organfed.shared.organ import Organ
from organfed.shared.surgery import Placement, TransplantMode, plan_transplant
from organfed.shared.sweep import ComposedModel, planned_layers

if TYPE_CHECKING:
    from organfed.server.coordinator import Coordinator


@dataclass(frozen=True)
class Layout:
    mode: TransplantMode
    positions: tuple[int, ...]


def layout(co: Coordinator, count: int = 1, names: Sequence[str] = ()) -> Layout:
    """The transplant mode and one position per organ for ``count`` organs (named ``names`` for per-site)."""
    cfg = co.config
    source = co.start.manifest.source_layers[0]
    if cfg.method is Method.PER_SITE:
        mode = TransplantMode.INSERT
        chosen = cfg.site_positions
        positions = tuple(chosen.get(name, min(source + i, co.base.num_layers)) for i, name in enumerate(names))
        return Layout(mode, positions)
    mode = TransplantMode.REPLACE if cfg.final_mode is FinalMode.AUTO else TransplantMode(cfg.final_mode.value)
    return Layout(mode, (cfg.final_position if cfg.final_position >= 0 else source,) * count)


class Evaluator:
    """The base model loaded once, and token ids per evaluation set, for in-memory perplexities."""

    def __init__(self, base: ModelDir, *, device: str, max_tokens: int) -> None:
        self.base = base
        self.model: PreTrainedModel = load_model(base.path, device=device)
        self.tokenizer = load_tokenizer(base.path)
        self.block_size = min(context_length(self.model.config), 256)
        self.max_tokens = max_tokens
        self._ids: dict[tuple[Path, ...], torch.Tensor] = {}

    def ids(self, paths: Sequence[Path]) -> torch.Tensor:
        key = tuple(paths)
        if key not in self._ids:
            self._ids[key] = load_token_ids(self.tokenizer, list(paths), max_tokens=self.max_tokens)
        return self._ids[key]

    def perplexity(self, paths: Sequence[Path], organs: Sequence[Organ] = (), mode: TransplantMode = TransplantMode.REPLACE,
                   positions: Sequence[int] = ()) -> float:
        """Perplexity of the base, or of the base with ``organs`` transplanted at ``positions``."""
        layers = None
        if organs:
            placements = [Placement(o, p, f"organ {i}") for i, (o, p) in enumerate(zip(organs, positions, strict=True))]
            plan = plan_transplant(self.base.path, placements, mode)
            layers = planned_layers(self.model, self.base.adapter, plan)
        run = ComposedModel(self.model, self.base.adapter, layers)
        return perplexity(run, self.ids(paths), block_size=self.block_size).perplexity


def select_best(co: Coordinator, contributions: Sequence[Contribution]) -> tuple[Contribution, dict[str, float]]:
    """The contribution whose organ, transplanted into the recipient, has the lowest validation perplexity."""
    evaluator = Evaluator(co.base, device=co.config.device, max_tokens=co.config.eval_max_tokens)
    where = layout(co)
    scores = {
        c.site: evaluator.perplexity(co.config.val_paths, [c.organ], where.mode, where.positions)
        for c in contributions
    }
    best = min(contributions, key=lambda c: scores[c.site])
    return best, scores
