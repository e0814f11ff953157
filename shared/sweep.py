"""The position sweep: transplant one organ at each position and measure perplexity.

Each position is planned with :func:`organfed.shared.surgery.plan_transplant`
(the same checks and layer layout as a real transplant), then run in memory:
the recipient is loaded once and each planned layer list is run through the
family adapter, so no model directory is written per position. Perplexity is
measured on domain text and, to show forgetting, on general text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from organfed.shared.atomic import write_bytes_atomic, write_json_atomic
from organfed.shared.errors import ConfigError
from organfed.shared.evaluate import perplexity
from organfed.shared.families import FamilyAdapter
from organfed.shared.model_dir import load_model, open_model_dir
from organfed.shared.organ import Organ
from organfed.shared.plots import plot_sweeps
from organfed.shared.progress import progress_iter
from organfed.shared.safetensors_io import DTYPES
from organfed.shared.surgery import Placement, TransplantMode, TransplantPlan, plan_transplant


@dataclass(frozen=True)
class SweepPoint:
    position: int
    domain: float
    general: float | None


@dataclass(frozen=True)
class SweepResult:
    """Perplexity of the recipient with the organ at each position, next to the unchanged base."""

    label: str
    mode: str
    num_layers: int
    organ_layers: tuple[int, int]
    organ_digest: str
    base_domain: float
    base_general: float | None
    points: tuple[SweepPoint, ...]
    tokens: dict[str, int]
    warnings: tuple[str, ...] = ()

    def best(self) -> SweepPoint:
        """The position with the lowest domain perplexity."""
        return min(self.points, key=lambda p: p.domain)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["best_position"] = self.best().position
        return data


class ComposedModel(nn.Module):
    """A causal LM run with another layer list: ``embed -> layers -> head`` of ``model``."""

    def __init__(self, model: PreTrainedModel, adapter: FamilyAdapter, layers: Sequence[nn.Module] | None = None) -> None:
        super().__init__()
        self.model, self.adapter = model, adapter
        self.layers = nn.ModuleList(layers) if layers is not None else None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.adapter.forward(self.model, input_ids, self.layers)


def planned_layers(model: PreTrainedModel, adapter: FamilyAdapter, plan: TransplantPlan) -> list[nn.Module]:
    """The layer list a transplant ``plan`` writes, built in memory from ``model`` and the organs."""
    base = adapter.layers(model)
    stored = {suffix: DTYPES[entry.dtype] for suffix, (_, entry) in plan.recipient.layer_entries(0).items()}
    like = next(model.parameters())
    built: dict[int, dict[int, nn.Module]] = {}
    out: list[nn.Module] = []
    for index, src in enumerate(plan.layers):
        if src.placement is None:
            out.append(base[src.layer])
            continue
        if src.placement not in built:
            first = index - src.layer
            organ = plan.placements[src.placement].organ
            layers = organ.build_layers(model.config, range(first, first + organ.manifest.num_layers))
            _round_through(layers, stored)
            built[src.placement] = dict(enumerate(layers.to(device=like.device, dtype=like.dtype)))
        out.append(built[src.placement][src.layer])
    return out


@torch.no_grad()
def _round_through(layers: nn.ModuleList, stored: dict[str, torch.dtype]) -> None:
    """Round each weight through the dtype the recipient stores it in, as a written transplant does."""
    for layer in layers:
        for name, tensor in layer.state_dict().items():
            if name in stored and tensor.is_floating_point():
                tensor.copy_(tensor.to(stored[name]))


def valid_positions(num_layers: int, organ_size: int, mode: TransplantMode) -> range:
    return range(0, (num_layers - organ_size if mode is TransplantMode.REPLACE else num_layers) + 1)


def position_sweep(
    model_dir: Path | str,
    organ: Organ,
    domain_ids: torch.Tensor,
    *,
    mode: TransplantMode,
    block_size: int,
    general_ids: torch.Tensor | None = None,
    positions: Sequence[int] | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    label: str = "organ",
    progress: bool | None = None,
) -> SweepResult:
    """Perplexity on ``domain_ids`` (and ``general_ids``) with ``organ`` at each of ``positions`` (default: all)."""
    md = open_model_dir(model_dir)
    allowed = valid_positions(md.num_layers, organ.manifest.num_layers, mode)
    positions = list(positions) if positions is not None else list(allowed)
    if not positions:
        raise ConfigError("no positions to sweep")
    bad = [p for p in positions if p not in allowed]
    if bad:
        raise ConfigError(f"position {bad[0]} is outside {allowed.start}..{allowed.stop - 1} for {mode.value} of a "
                          f"{organ.manifest.num_layers}-layer organ into {md.num_layers} layers")
    if mode is TransplantMode.INSERT and getattr(md.config, "scale_attn_by_inverse_layer_idx", False):
        raise ConfigError("the sweep cannot insert into a model whose attention scale depends on the layer index")
    model = load_model(md.path, device=device)

    def measure(layers: list[nn.Module] | None) -> tuple[float, float | None]:
        run = ComposedModel(model, md.adapter, layers)
        domain = perplexity(run, domain_ids, block_size=block_size, batch_size=batch_size).perplexity
        general = perplexity(run, general_ids, block_size=block_size, batch_size=batch_size).perplexity if general_ids is not None else None
        return domain, general

    base_domain, base_general = measure(None)
    points, warnings = [], {}
    for position in progress_iter(positions, desc=f"sweep {label} ({mode.value})", enabled=progress):
        plan = plan_transplant(md.path, [Placement(organ, position, label)], mode)
        warnings.update(dict.fromkeys(plan.warnings))  # the same for every position; kept once, in order
        domain, general = measure(planned_layers(model, md.adapter, plan))
        points.append(SweepPoint(position, domain, general))
    return SweepResult(
        label=label,
        mode=mode.value,
        num_layers=md.num_layers,
        organ_layers=tuple(organ.manifest.source_layers),
        organ_digest=organ.manifest.tensor_digest,
        base_domain=base_domain,
        base_general=base_general,
        points=tuple(points),
        tokens={"domain": int(domain_ids.numel()), "general": int(general_ids.numel()) if general_ids is not None else 0},
        warnings=tuple(warnings),
    )


def sweep_markdown(results: Sequence[SweepResult]) -> str:
    """One table per sweep: perplexity by position, and the change against the base."""
    parts = []
    for r in results:
        general = r.base_general is not None
        parts.append(f"**{r.label}** ({r.mode}; organ from layers {r.organ_layers[0]}:{r.organ_layers[1]} "
                     f"of {r.num_layers}; best position {r.best().position})\n")
        parts += [f"> {w}\n" for w in r.warnings]
        head = "| position | domain ppl | vs base |" + (" general ppl | vs base |" if general else "")
        parts += [head, "|" + " ---: |" * (head.count("|") - 1)]
        parts.append(f"| base | {r.base_domain:.2f} | |" + (f" {r.base_general:.2f} | |" if general else ""))
        for p in r.points:
            row = f"| {p.position} | {p.domain:.2f} | {_pct(p.domain, r.base_domain)} |"
            if general:
                row += f" {p.general:.2f} | {_pct(p.general, r.base_general)} |"
            parts.append(row)
        parts.append("")
    return "\n".join(parts)


def _pct(value: float, base: float) -> str:
    return f"{100 * (value / base - 1):+.1f}%"


def write_sweep(results: Sequence[SweepResult], prefix: Path | str, *, title: str = "Perplexity against organ position") -> dict[str, Path]:
    """Write ``prefix``.json, .md and .png; return their paths."""
    prefix = Path(prefix)
    paths = {kind: prefix.with_name(prefix.name + "." + kind) for kind in ("json", "md", "png")}
    write_json_atomic(paths["json"], [r.to_dict() for r in results])
    write_bytes_atomic(paths["md"], (f"# {title}\n\n" + sweep_markdown(results)).encode())
    plot_sweeps(results, paths["png"], title=title)
    return paths


def read_sweep(path: Path | str) -> list[SweepResult]:
    """Sweeps written by :func:`write_sweep` (to re-plot or compare)."""
    out = []
    for item in json.loads(Path(path).read_text(encoding="utf-8")):
        item.pop("best_position", None)
        item["points"] = tuple(SweepPoint(**p) for p in item["points"])
        item["organ_layers"] = tuple(item["organ_layers"])
        item["warnings"] = tuple(item.get("warnings", ()))
        out.append(SweepResult(**item))
    return out
