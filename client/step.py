"""The pieces of one training step: what is trained, the optimizer, the loss, the device, one step, one evaluation.

:mod:`organfed.client.loop` runs these over a whole run (schedule, checkpoints,
progress); the benchmarks call them directly to time single steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from organfed.client.config import Precision, TrainConfig
from organfed.shared.blocks import BlockData
from organfed.shared.errors import ConfigError, TrainingError
from organfed.shared.model_dir import resolve_device


@dataclass
class Trainable:
    """What the loop trains: ``module(input_ids) -> logits``, and the parameters to update, by name."""

    module: nn.Module
    params: dict[str, nn.Parameter]

    def __post_init__(self) -> None:
        if not self.params:
            raise TrainingError("nothing to train: no trainable parameters")
        frozen = sorted(n for n, p in self.params.items() if not p.requires_grad)
        if frozen:
            raise TrainingError(f"parameter {frozen[0]!r} is listed as trainable but does not require gradients")

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params.values())


Prepare = Callable[[Trainable, TrainConfig], tuple[nn.Module, torch.optim.Optimizer]]
"""Makes the module to call and the optimizer to step: the seam for DP-SGD."""


def adamw(trainable: Trainable, config: TrainConfig) -> tuple[nn.Module, torch.optim.Optimizer]:
    """AdamW over the trainable parameters in name order; the loop sets the learning rate of every group.

    Weight decay applies to matrices only: biases and norm gains (1-D) are not pulled towards zero.
    """
    params = [trainable.params[name] for name in sorted(trainable.params)]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return trainable.module, torch.optim.AdamW([g for g in groups if g["params"]], lr=config.learning_rate)


def lm_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``logits`` on ``ids`` (both of one block length)."""
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def usable_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a device; :class:`ConfigError` if CUDA is asked for and absent."""
    device = resolve_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA device (use --device cpu or auto)")
    return device


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 when asked for, or on ``auto`` when the CUDA device supports it; else ``None`` (fp32)."""
    if config.precision is Precision.BF16:
        return torch.bfloat16
    if config.precision is Precision.AUTO and device.type == "cuda":
        with torch.cuda.device(device):  # native bf16 only: emulated bf16 (pre-Ampere) is slower than fp32
            if torch.cuda.is_bf16_supported(including_emulation=False):
                return torch.bfloat16
    return None


@torch.no_grad()
def evaluate_loss(module: nn.Module, data: BlockData, *, max_blocks: int, batch_size: int, device: torch.device,
                  dtype: torch.dtype | None = None) -> float | None:
    """Mean next-token loss on the first ``max_blocks`` validation blocks (``None`` without any)."""
    indices = data.val[:max_blocks]
    if len(indices) == 0:
        return None
    was_training = module.training
    module.eval()
    total = 0.0
    for i in range(0, len(indices), batch_size):
        ids = data.batch(indices[i : i + batch_size]).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            total += lm_loss(module(ids), ids).item() * len(ids)
    module.train(was_training)
    return total / len(indices)


def train_step(module: nn.Module, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], batches: list[torch.Tensor],
               *, max_grad_norm: float | None, device: torch.device, dtype: torch.dtype | None = None) -> float:
    """One optimizer step over ``batches`` (accumulated); returns their mean loss."""
    total = 0.0
    for ids in batches:
        ids = ids.to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = lm_loss(module(ids), ids)
        (loss / len(batches)).backward()
        total += loss.item() / len(batches)
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return total
