"""The training configuration: one typed, self-validating dataclass shared by organs and baselines."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from organfed.shared.errors import ConfigError

DEFAULT_STEPS = 200
MAX_SEED = 2**32


class TrainMode(str, Enum):
    """How an organ is trained.

    ``wrapper`` (the paper's): standalone inside ``Embed -> organ -> Head`` with
    frozen copies of the recipient's embedding and head. ``in-situ``: at its own
    position inside the otherwise frozen full model.
    """

    WRAPPER = "wrapper"
    IN_SITU = "in-situ"


class Schedule(str, Enum):
    """Learning rate after the linear warm-up: cosine decay to ``min_lr_ratio``, or constant."""

    COSINE = "cosine"
    CONSTANT = "constant"


class Precision(str, Enum):
    """``auto``: bf16 autocast on a CUDA device that supports it, else fp32. Weights stay fp32."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"


_ENUMS: dict[str, type[Enum]] = {"mode": TrainMode, "schedule": Schedule, "precision": Precision}
_NOT_HYPERPARAMETERS = ("device", "eval_every", "eval_blocks", "checkpoint_every")
"""Fields that change how a run is watched or where it runs, not what it computes."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (``mode`` is read by organ training only).

    Give ``steps`` or ``epochs`` (default: :data:`DEFAULT_STEPS` steps). One step
    is ``grad_accum`` micro-batches of ``batch_size`` blocks of ``block_size`` tokens.
    """

    mode: TrainMode = TrainMode.IN_SITU
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    block_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Schedule = Schedule.COSINE
    min_lr_ratio: float = 0.1
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    eval_every: int | None = None
    eval_blocks: int = 256
    checkpoint_every: int | None = None
    device: str = "auto"
    precision: Precision = Precision.AUTO

    def __post_init__(self) -> None:
        for name, enum in _ENUMS.items():
            value = getattr(self, name)
            if not isinstance(value, enum):
                try:
                    object.__setattr__(self, name, enum(value))
                except ValueError:
                    choices = ", ".join(m.value for m in enum)
                    raise ConfigError(f"TrainConfig.{name} must be one of {choices}, got {value!r}") from None
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("TrainConfig.steps and TrainConfig.epochs are exclusive: give one")
        self._need("steps", self.steps is None or (_is_int(self.steps) and self.steps >= 1), "an integer >= 1")
        self._need("epochs", self.epochs is None or (_is_num(self.epochs) and self.epochs > 0), "a number > 0")
        for name in ("batch_size", "grad_accum", "eval_blocks"):
            self._need(name, _is_int(getattr(self, name)) and getattr(self, name) >= 1, "an integer >= 1")
        self._need("block_size", _is_int(self.block_size) and self.block_size >= 2, "an integer >= 2")
        self._need("learning_rate", _is_num(self.learning_rate) and self.learning_rate > 0, "a number > 0")
        self._need("weight_decay", _is_num(self.weight_decay) and self.weight_decay >= 0, "a number >= 0")
        self._need("warmup_steps", _is_int(self.warmup_steps) and self.warmup_steps >= 0, "an integer >= 0")
        self._need("min_lr_ratio", _is_num(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1, "a number in [0, 1]")
        self._need("max_grad_norm", self.max_grad_norm is None or (_is_num(self.max_grad_norm) and self.max_grad_norm > 0), "None or a number > 0")
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            self._need(name, _is_int(value) and 0 <= value < MAX_SEED, f"an integer in [0, {MAX_SEED})")
        self._need("val_fraction", _is_num(self.val_fraction) and 0 <= self.val_fraction < 1, "a number in [0, 1)")
        for name in ("eval_every", "checkpoint_every"):
            self._need(name, getattr(self, name) is None or (_is_int(getattr(self, name)) and getattr(self, name) >= 1), "None or an integer >= 1")
        self._need("device", self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:"), "auto, cpu, cuda or cuda:N")

    def _need(self, name: str, ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"TrainConfig.{name} must be {what}, got {getattr(self, name)!r}")

    @property
    def blocks_per_step(self) -> int:
        return self.batch_size * self.grad_accum

    def total_steps(self, train_blocks: int) -> int:
        """Optimizer steps of the run on ``train_blocks`` training blocks."""
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * train_blocks / self.blocks_per_step))
        return self.steps if self.steps is not None else DEFAULT_STEPS

    def learning_rate_at(self, step: int, total: int) -> float:
        """The learning rate of step ``step`` (0-based) of ``total``: linear warm-up, then the schedule."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        if self.schedule is Schedule.CONSTANT:
            return self.learning_rate
        progress = (step - self.warmup_steps) / max(1, total - self.warmup_steps)
        floor = self.min_lr_ratio * self.learning_rate
        return floor + (self.learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def hyperparameters(self) -> dict[str, Any]:
        """The fields that decide what a run computes, JSON-ready (provenance, and the resume check)."""
        out = {}
        for f in fields(self):
            if f.name not in _NOT_HYPERPARAMETERS:
                value = getattr(self, f.name)
                out[f.name] = value.value if isinstance(value, Enum) else value
        return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
