"""Transplant organs into a recipient model: plan first, then execute shard by shard.

:func:`plan_transplant` decides everything (compatibility, where each output
layer comes from, what to warn about) without writing a byte;
:func:`execute_plan` then streams the recipient's shards into a new Hugging
Face model directory, copying tensors chunk by chunk and writing the organs'
layers in place. The directory appears under its final name only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch

from organfed.shared.atomic import fsync_dir, write_json_atomic
from organfed.shared.errors import ConfigError, IncompatibleOrganError, OrganFormatError
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.model_dir import INDEX_NAME, SINGLE_NAME, ModelDir, open_model_dir
from organfed.shared.organ import Organ
from organfed.shared.organ_rules import architecture_mismatch, manifest_adapter
from organfed.shared.safetensors_io import DTYPE_NAMES, DTYPES, StreamingWriter, TensorSpec, iter_chunks, tensor_bytes
from organfed.shared.version import __version__

PROVENANCE_NAME = "organfed_transplant.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl")


class TransplantMode(str, Enum):
    """``replace`` overwrites layers [P, P+k); ``insert`` adds k layers after the first P."""

    REPLACE = "replace"
    INSERT = "insert"


@dataclass(frozen=True)
class Placement:
    """One organ and the position it goes to."""

    organ: Organ
    position: int
    label: str = "organ"


@dataclass(frozen=True)
class LayerSource:
    """Where one layer of the output comes from: a recipient layer or an organ's layer."""

    layer: int
    placement: int | None = None
    layer_type: str | None = None


@dataclass(frozen=True)
class TransplantPlan:
    recipient: ModelDir
    mode: TransplantMode
    placements: tuple[Placement, ...]
    layers: tuple[LayerSource, ...]
    warnings: tuple[str, ...] = field(default=())


def check_compatible(organ: Organ, recipient: ModelDir, label: str = "organ") -> None:
    """Raise :class:`IncompatibleOrganError` naming the family, model type or first architecture number that differs.

    The architecture must equal the recipient's exactly (the rule an :class:`~organfed.shared.policy.OrganPolicy` applies).
    """
    m = organ.manifest
    if m.family != recipient.adapter.name:
        raise IncompatibleOrganError(f"{label} is a {m.family} organ; the recipient is {recipient.adapter.name}")
    if m.model_type != recipient.config.model_type:
        raise IncompatibleOrganError(f"{label} is a {m.model_type} organ; the recipient is {recipient.config.model_type}")
    mismatch = architecture_mismatch(m.architecture, recipient.adapter.architecture(recipient.config))
    if mismatch is not None:
        raise IncompatibleOrganError(
            f"{label} does not fit: {mismatch.key} is {mismatch.found} in the organ but {mismatch.expected} in the recipient"
        )


def plan_transplant(recipient_dir: Path | str, placements: Sequence[Placement], mode: TransplantMode) -> TransplantPlan:
    """Check every organ against the recipient and lay out the output's layers."""
    if not placements:
        raise ConfigError("transplant needs at least one organ")
    md = open_model_dir(recipient_dir)
    num_layers = md.num_layers
    types = md.adapter.layer_types(md.config)
    warnings: list[str] = []
    base_fp = fingerprint_model_dir(md.path)
    recipient_dtypes = {entry.dtype for _, entry in md.layer_entries(0).values()}
    recipient_arch = md.adapter.architecture(md.config)
    index_bound = [key for key in md.adapter.index_dependent_keys if recipient_arch.get(key)]
    spans: list[tuple[int, int, str]] = []
    for p in placements:
        check_compatible(p.organ, md, p.label)
        m = p.organ.manifest
        try:
            manifest_adapter(m)  # layer types the family allows (an organ made in memory skipped load_organ)
        except OrganFormatError as exc:
            raise OrganFormatError(f"{p.label}: {exc}") from None
        k = m.num_layers
        last = num_layers - k if mode is TransplantMode.REPLACE else num_layers
        if not 0 <= p.position <= last:
            raise ConfigError(f"{p.label}: position {p.position} is outside 0..{last} for {mode.value} of {k} layers into {num_layers}")
        if index_bound and mode is TransplantMode.INSERT:
            raise IncompatibleOrganError(
                f"{p.label}: {index_bound[0]} ties every layer to its index and insert renumbers the recipient's layers "
                f"after {p.position}; use replace at the organ's source position {m.source_layers[0]}"
            )
        if index_bound and p.position != m.source_layers[0]:
            raise IncompatibleOrganError(
                f"{p.label}: {index_bound[0]} ties layers to their index; it can only go back to {m.source_layers[0]}"
            )
        if m.base_fingerprint != base_fp:
            warnings.append(
                f"WARNING: {p.label} was trained on base {m.base_fingerprint[:19]}, the recipient is {base_fp[:19]}: "
                "organs need not transfer to a different base; evaluate before use"
            )
        if m.dtype not in recipient_dtypes:
            warnings.append(f"{p.label}: organ weights are {m.dtype}, converted to the recipient's {'/'.join(sorted(recipient_dtypes))}")
        span = (p.position, p.position + k) if mode is TransplantMode.REPLACE else (p.position, p.position)
        for other in spans:
            if (mode is TransplantMode.REPLACE and span[0] < other[1] and other[0] < span[1]) or span == other[:2]:
                raise ConfigError(f"{p.label} at {p.position} overlaps {other[2]} at {other[0]}")
        spans.append((*span, p.label))

    layers: list[LayerSource] = []
    by_position = {p.position: i for i, p in enumerate(placements)}

    def organ_layers(index: int) -> list[LayerSource]:
        m = placements[index].organ.manifest
        return [LayerSource(j, index, m.layer_types[j] if m.layer_types else None) for j in range(m.num_layers)]

    i = 0
    while i <= num_layers:
        if i in by_position:
            layers += organ_layers(by_position[i])
            if mode is TransplantMode.REPLACE:
                i += placements[by_position[i]].organ.manifest.num_layers
                continue
        if i < num_layers:
            layers.append(LayerSource(i, None, types[i] if types else None))
        i += 1
    return TransplantPlan(md, mode, tuple(placements), tuple(layers), tuple(warnings))


@dataclass(frozen=True)
class TransplantResult:
    out: Path
    num_layers: int
    warnings: tuple[str, ...]


def execute_plan(plan: TransplantPlan, out: Path | str, *, overwrite: bool = False) -> TransplantResult:
    """Write the planned model to ``out`` (a new directory, created atomically)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists (pass --overwrite to replace it)")
    md = plan.recipient
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}.", dir=out.parent))
    try:
        weight_map, total = _write_shards(plan, tmp)
        _write_side_files(plan, tmp, weight_map, total)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        _rename_into_place(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TransplantResult(out, len(plan.layers), plan.warnings)


def _rename_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and put back if that rename fails."""
    if not out.exists():
        tmp.rename(out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".old-{out.name}.", dir=out.parent))
    old = trash / out.name
    try:
        out.rename(old)
    except BaseException:
        trash.rmdir()
        raise
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)  # should this fail too, the previous output stays in `trash`, never deleted
        trash.rmdir()
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _write_shards(plan: TransplantPlan, tmp: Path) -> tuple[dict[str, str], int]:
    """Stream every output shard; return the key-to-shard-name map and the total tensor bytes."""
    md = plan.recipient
    prefix = md.layer_prefix
    # Organ layers are written into the shard that holds the recipient layer they sit next to.
    home_of_layer = {}
    for shard in md.shards:
        for key in shard.entries:
            where = md.layer_of(key)
            if where:
                home_of_layer.setdefault(where[0], shard.path.name)
    last = md.num_layers - 1
    ref_dtypes = {s: e.dtype for s, (_, e) in md.layer_entries(0).items()}
    weight_map: dict[str, str] = {}
    total = 0
    for shard in md.shards:
        plan_items: list[tuple[str, TensorSpec, object]] = []
        for out_index, src in enumerate(plan.layers):
            if src.placement is None:
                continue
            p = plan.placements[src.placement]
            if home_of_layer[min(p.position, last)] != shard.path.name:
                continue
            for suffix, tensor in sorted(p.organ.layer_state(src.layer).items()):
                target = DTYPES[ref_dtypes.get(suffix, p.organ.manifest.dtype)]
                tensor = tensor.to(target)
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise IncompatibleOrganError(
                        f"{p.label}: tensor {src.layer}.{suffix} holds NaN or infinite values once converted from "
                        f"{p.organ.manifest.dtype} to the recipient's {DTYPE_NAMES[target]} (a value outside its range)"
                    )
                name = f"{prefix}.{out_index}.{suffix}"
                plan_items.append((name, TensorSpec(name, DTYPE_NAMES[target], tuple(tensor.shape)), tensor))
        renumber = {src.layer: j for j, src in enumerate(plan.layers) if src.placement is None}
        for key, entry in shard.entries.items():
            where = md.layer_of(key)
            if where is None:
                name = key
            elif where[1] in md.adapter.ignored_layer_keys or where[0] not in renumber:
                continue
            else:
                name = f"{prefix}.{renumber[where[0]]}.{where[1]}"
            plan_items.append((name, TensorSpec(name, entry.dtype, entry.shape), entry))
        plan_items.sort(key=lambda item: item[0])
        with open(tmp / shard.path.name, "wb") as fh, open(shard.path, "rb") as src_fh:
            writer = StreamingWriter(fh, [spec for _, spec, _ in plan_items], {"format": "pt"})
            for name, _, source in plan_items:
                if isinstance(source, torch.Tensor):
                    writer.write(name, [tensor_bytes(source)])
                else:
                    writer.write(name, iter_chunks(src_fh, source))
            writer.close()
        weight_map.update({name: shard.path.name for name, _, _ in plan_items})
        total += sum(spec.nbytes for _, spec, _ in plan_items)
    return weight_map, total


def _write_side_files(plan: TransplantPlan, tmp: Path, weight_map: dict[str, str], total: int) -> None:
    md = plan.recipient
    for f in sorted(md.path.iterdir()):
        if f.is_file() and f.name not in ("config.json", INDEX_NAME, PROVENANCE_NAME) and not f.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(f, tmp / f.name)
    types = [src.layer_type for src in plan.layers] if md.adapter.layer_types(md.config) is not None else None
    config = md.adapter.config_with_layers(md.config_dict, len(plan.layers), types)
    write_json_atomic(tmp / "config.json", config)
    if (md.path / INDEX_NAME).is_file() or [s.path.name for s in md.shards] != [SINGLE_NAME]:
        write_json_atomic(tmp / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    write_json_atomic(
        tmp / PROVENANCE_NAME,
        {
            "organfed_version": __version__,
            "recipient": str(md.path),
            "recipient_fingerprint": fingerprint_model_dir(md.path),
            "mode": plan.mode.value,
            "organs": [
                {
                    "label": p.label,
                    "position": p.position,
                    "tensor_digest": p.organ.manifest.tensor_digest,
                    "base_fingerprint": p.organ.manifest.base_fingerprint,
                    "source_layers": list(p.organ.manifest.source_layers),
                    "training": p.organ.manifest.training,
                }
                for p in plan.placements
            ],
            "layers": [{"placement": s.placement, "layer": s.layer} for s in plan.layers],
            "warnings": list(plan.warnings),
        },
    )


def transplant(recipient_dir: Path | str, placements: Sequence[Placement], mode: TransplantMode, out: Path | str, *, overwrite: bool = False) -> TransplantResult:
    """Plan and execute a transplant in one call."""
    return execute_plan(plan_transplant(recipient_dir, placements, mode), out, overwrite=overwrite)
