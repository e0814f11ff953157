"""Train an organ on a site's text: the paper's wrapper mode, or in-situ.

:func:`train_organ` starts from the base model's own layers (or from an organ a
federated round hands over), trains only the organ's parameters, and returns
the new organ, whose manifest carries the training provenance (mode, steps,
tokens, hyperparameters, a digest and counts of the data, never the data), with
the run's non-sensitive metrics.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from organfed.client.config import Precision, Schedule, TrainConfig, TrainMode
from organfed.client.loop import LoopStats, RunControl, run_training
from organfed.client.step import Trainable, autocast_dtype
from organfed.client.wrapper import WrapperModel
from organfed.shared.blocks import BlockData, DataStats, prepare_blocks
from organfed.shared.data import load_tokenizer
from organfed.shared.errors import ConfigError, IncompatibleOrganError
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.model_dir import ModelDir, context_length, load_model, open_model_dir, resolve_device
from organfed.shared.organ import LayerRange, Organ, extract_organ, load_organ, make_organ
from organfed.shared.surgery import check_compatible
from organfed.shared.version import __version__

__all__ = ["Precision", "Schedule", "TrainConfig", "TrainMode", "TrainResult", "initial_organ", "load_data", "train_organ"]


@dataclass(frozen=True)
class TrainResult:
    """The trained organ and what may be reported about the run (no data, no weights)."""

    organ: Organ
    stats: LoopStats
    data: DataStats

    def metrics(self) -> dict[str, Any]:
        """Counts, losses and timing, JSON-ready."""
        return {**self.stats.to_dict(), "data": self.data.to_dict(), "tensor_digest": self.organ.manifest.tensor_digest}


class InSituModel(nn.Module):
    """The full base model with the organ's layers at their own position; only those are trainable."""

    def __init__(self, md: ModelDir, organ: Organ) -> None:
        super().__init__()
        self.adapter = md.adapter
        self.model = load_model(md.path, dtype=torch.float32)
        self.model.requires_grad_(False)
        self.start, self.end = organ.manifest.source_layers
        layers = self.adapter.layers(self.model)
        for index, layer in zip(range(self.start, self.end), organ.build_layers(self.model.config)):
            layers[index] = layer

    @property
    def organ(self) -> nn.ModuleList:
        return nn.ModuleList(self.adapter.layers(self.model)[self.start : self.end])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.adapter.forward(self.model, input_ids)


def initial_organ(model_dir: Path | str, layers: LayerRange | None = None) -> Organ:
    """The base model's own layers ``layers`` (default: the paper's k=3 from floor(L/3)) as an organ."""
    with tempfile.TemporaryDirectory(prefix="organfed-organ-") as tmp:
        extract_organ(model_dir, Path(tmp) / "organ.safetensors", layers)
        return load_organ(Path(tmp) / "organ.safetensors")


def load_data(model_dir: Path | str, paths: Sequence[Path | str], config: TrainConfig, *,
              cache_dir: Path | str | None = None) -> BlockData:
    """Tokenize ``paths`` with the model's own tokenizer into blocks split as ``config`` says."""
    return prepare_blocks(load_tokenizer(model_dir), paths, block_size=config.block_size,
                          val_fraction=config.val_fraction, split_seed=config.split_seed, cache_dir=cache_dir)


def check_data(md: ModelDir, data: BlockData, config: TrainConfig) -> None:
    """Refuse blocks that do not fit the config or the model's context."""
    if data.stats.block_size != config.block_size:
        raise ConfigError(f"the data was packed in blocks of {data.stats.block_size}, the config says {config.block_size}")
    if config.block_size > context_length(md.config):
        raise ConfigError(f"block size {config.block_size} exceeds the model's context of {context_length(md.config)} tokens")


def _check_organ(md: ModelDir, organ: Organ, layers: LayerRange | None) -> None:
    check_compatible(organ, md)
    start, end = organ.manifest.source_layers
    if layers is not None and (layers.start, layers.end) != (start, end):
        raise ConfigError(f"layers {layers} differ from the organ's own range {start}:{end}")
    if end > md.num_layers:
        raise IncompatibleOrganError(f"the organ's layers {start}:{end} lie outside the base's {md.num_layers} layers")
    base = fingerprint_model_dir(md.path)
    if organ.manifest.base_fingerprint != base:
        raise IncompatibleOrganError(
            f"the organ belongs to base {organ.manifest.base_fingerprint[:19]}, this base is {base[:19]}: train on the same base"
        )


def build_trainable(md: ModelDir, organ: Organ, mode: TrainMode) -> Trainable:
    """The module to train for ``mode``, with only the organ's parameters trainable."""
    module = WrapperModel(md, organ) if mode is TrainMode.WRAPPER else InSituModel(md, organ)
    layers = module.organ
    layers.requires_grad_(True)
    return Trainable(module, {f"organ.{name}": p for name, p in layers.named_parameters()})


def train_organ(
    model_dir: Path | str,
    data: Sequence[Path | str] | BlockData,
    config: TrainConfig = TrainConfig(),
    *,
    organ: Organ | None = None,
    layers: LayerRange | None = None,
    control: RunControl = RunControl(),
) -> TrainResult:
    """Train an organ of the base in ``model_dir`` on ``data`` (paths, or blocks from :func:`load_data`).

    Starts from ``organ`` when given (a federated round's current organ; it must
    come from this base), else from the base's layers ``layers``. Only the
    organ's parameters change; the result is in the organ's own dtype.
    """
    md = open_model_dir(model_dir)
    if organ is None:
        organ = initial_organ(md.path, layers)
    _check_organ(md, organ, layers)
    blocks = data if isinstance(data, BlockData) else load_data(md.path, data, config)
    check_data(md, blocks, config)
    with torch.random.fork_rng(devices=[]):  # building layers draws random initial weights; keep the caller's state
        trainable = build_trainable(md, organ, config.mode)
    identity = {
        "kind": "organ",
        "hyperparameters": config.hyperparameters(),
        "data_digest": blocks.stats.digest,
        "base_fingerprint": organ.manifest.base_fingerprint,
        "initial_organ": organ.manifest.tensor_digest,
        "layers": list(organ.manifest.source_layers),
    }
    stats = run_training(trainable, blocks, config, identity, control)
    state = trainable.module.organ.state_dict()
    dtype = next(iter(organ.tensors.values())).dtype
    tensors = {name: state[name].detach().to("cpu", dtype) for name in organ.tensors}
    provenance = training_provenance(config, stats, blocks.stats, organ)
    trained = make_organ(tensors, organ.manifest, training=provenance, organfed_version=__version__,
                         created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return TrainResult(trained, stats, blocks.stats)


def run_record(config: TrainConfig, stats: LoopStats, data: DataStats) -> dict[str, Any]:
    """What any training run (organ or baseline) records about itself: counts, losses, settings, never the data."""
    return {
        "steps": stats.steps,
        "tokens_seen": stats.tokens,
        "data": data.to_dict(),
        "final_train_loss": stats.train_loss,
        "final_val_loss": stats.val_loss,
        "initial_val_loss": stats.initial_val_loss,
        "seed": config.seed,
        "hyperparameters": config.hyperparameters(),
        "trainable_parameters": stats.trainable_parameters,
    }


def training_provenance(config: TrainConfig, stats: LoopStats, data: DataStats, start: Organ) -> dict[str, Any]:
    """What the organ's manifest records about how it was trained."""
    device = resolve_device(config.device)
    return {
        "mode": config.mode.value,
        **run_record(config, stats, data),
        "initial_organ_digest": start.manifest.tensor_digest,
        "device_type": device.type,
        "precision": "bf16" if autocast_dtype(config, device) is torch.bfloat16 else "fp32",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
