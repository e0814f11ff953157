"""The training loop shared by organ training and the baselines.

The loop knows a :class:`Trainable` (a module from token ids to logits and the
named parameters to train), packed blocks, and a :class:`TrainConfig`. It is
deterministic on CPU: the data order is a pure function of the seed and the
step, the global generators are seeded inside :func:`torch.random.fork_rng`
(the caller's state is restored afterwards), and a checkpoint holds everything
else, so a resumed run ends bit-identical to an uninterrupted one.

The one place where the trained module and its optimizer are made is the
``prepare`` hook (default :func:`organfed.client.step.adamw`); differential
privacy plugs in there. The step itself is in :mod:`organfed.client.step`.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from organfed.client.checkpoint import Checkpoint, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from organfed.client.config import TrainConfig
from organfed.client.step import Prepare, Trainable, adamw, autocast_dtype, evaluate_loss, train_step, usable_device
from organfed.shared.blocks import BatchOrder, BlockData
from organfed.shared.errors import CheckpointError, TrainingError, TrainingInterrupted
from organfed.shared.progress import TrainProgress

RECENT_LOSSES = 20
"""The reported training loss is the mean over this many last steps."""


@dataclass(frozen=True)
class StepInfo:
    """What ``on_step`` callbacks see after each optimizer step."""

    step: int
    total_steps: int
    loss: float
    learning_rate: float
    tokens: int
    seconds: float


@dataclass(frozen=True)
class RunControl:
    """How a run is watched and stored (none of it changes what the run computes)."""

    checkpoint_dir: Path | None = None
    resume: bool = False
    on_step: Callable[[StepInfo], None] | None = None
    progress: bool | None = None
    prepare: Prepare = adamw
    desc: str = "train"


@dataclass(frozen=True)
class LoopStats:
    """Non-sensitive results of a run: counts, losses and timing."""

    steps: int
    tokens: int
    train_loss: float
    val_loss: float | None
    initial_val_loss: float | None
    median_step_seconds: float | None
    seconds: float
    trainable_parameters: int
    resumed_from: int | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _StopFlag:
    """Set by the first Ctrl-C, which then no longer interrupts; a second Ctrl-C does at once."""

    def __init__(self) -> None:
        self.set = False


@contextlib.contextmanager
def _catch_interrupt() -> Iterator[_StopFlag]:
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        flag.set = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def run_training(trainable: Trainable, data: BlockData, config: TrainConfig, identity: dict[str, Any],
                 control: RunControl = RunControl()) -> LoopStats:
    """Train ``trainable`` on ``data``; ``identity`` (JSON-ready) must match a checkpoint to resume from it."""
    device = usable_device(config.device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        return _Run(trainable, data, config, identity, control, device).run()


class _Run:
    """One session of a run: set up (or resume), step, evaluate, checkpoint."""

    def __init__(self, trainable: Trainable, data: BlockData, config: TrainConfig, identity: dict[str, Any],
                 control: RunControl, device: torch.device) -> None:
        self.trainable, self.data, self.config, self.control, self.device = trainable, data, config, control, device
        self.identity = json.loads(json.dumps(identity))
        self.dtype = autocast_dtype(config, device)
        self.total = config.total_steps(len(data.train))
        self.order = BatchOrder(data.train, config.batch_size, config.seed)
        trainable.module.to(device)
        self.module, self.optimizer = control.prepare(trainable, config)
        self.step, self.tokens, self.recent, self.history = 0, 0, [], []
        self.initial_val: float | None = None
        self.resumed_from: int | None = None
        self.step_seconds: list[float] = []

    def evaluate(self) -> float | None:
        return evaluate_loss(self.module, self.data, max_blocks=self.config.eval_blocks,
                             batch_size=self.config.batch_size, device=self.device, dtype=self.dtype)

    def run(self) -> LoopStats:
        started = time.perf_counter()
        self._start_or_resume()
        self.module.train()
        in_step = False
        with TrainProgress(self.total, initial=self.step, desc=self.control.desc, enabled=self.control.progress) as bar, \
                _catch_interrupt() as stop:
            try:
                while self.step < self.total:
                    in_step = True
                    loss, seconds = self._one_step()
                    in_step = False  # step, tokens and losses are consistent again: a checkpoint may be taken
                    bar.update(self.step, loss=loss, tokens=self.config.blocks_per_step * self.config.block_size)
                    self._after_step(loss, seconds, bar)
                    if stop.set:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                if in_step or self.control.checkpoint_dir is None:
                    raise TrainingInterrupted(f"interrupted during step {self.step + 1}; resume from the last checkpoint, if any") from None
                self._save()
                raise TrainingInterrupted(
                    f"interrupted after step {self.step}; checkpoint saved in {self.control.checkpoint_dir}, resume with --resume"
                ) from None
        val = self.evaluate()
        self.history.append({"step": self.step, "val_loss": val})
        return LoopStats(
            steps=self.step,
            tokens=self.tokens,
            train_loss=statistics.fmean(self.recent) if self.recent else float("nan"),
            val_loss=val,
            initial_val_loss=self.initial_val,
            median_step_seconds=statistics.median(self.step_seconds) if self.step_seconds else None,
            seconds=time.perf_counter() - started,
            trainable_parameters=self.trainable.num_parameters,
            resumed_from=self.resumed_from,
            history=self.history,
        )

    def _start_or_resume(self) -> None:
        directory = self.control.checkpoint_dir
        ckpt = load_checkpoint(directory) if directory is not None else None
        if ckpt is None:
            if self.control.resume:
                raise CheckpointError(f"--resume given but {directory} holds no checkpoint")
            self.initial_val = self.evaluate()
            self.history.append({"step": 0, "val_loss": self.initial_val})
            return
        if not self.control.resume:
            raise CheckpointError(f"{directory} holds a checkpoint of step {ckpt.step}: pass --resume to continue it, or remove it")
        self._check_identity(ckpt.run)
        with torch.no_grad():
            for name, param in self.trainable.params.items():
                if name not in ckpt.params or ckpt.params[name].shape != param.shape:
                    raise CheckpointError(f"checkpoint lacks parameter {name!r} of shape {list(param.shape)}")
                param.copy_(ckpt.params[name])
        self.optimizer.load_state_dict(ckpt.optimizer)
        restore_rng(ckpt.rng, self.device)
        progress = ckpt.progress
        self.step = self.resumed_from = ckpt.step
        self.tokens, self.recent, self.history = progress["tokens"], progress["recent_losses"], progress["history"]
        self.initial_val = progress["initial_val_loss"]

    def _check_identity(self, saved: dict[str, Any]) -> None:
        difference = _first_difference(saved, self.identity)
        if difference is not None:
            key, was, now = difference
            raise CheckpointError(f"the checkpoint belongs to a different run: {key} was {was!r}, now {now!r}")

    def _one_step(self) -> tuple[float, float]:
        start = time.perf_counter()
        lr = self.config.learning_rate_at(self.step, self.total)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = self.config.grad_accum
        batches = [self.data.batch(self.order(self.step * accum + j)) for j in range(accum)]
        loss = train_step(self.module, self.optimizer, list(self.trainable.params.values()), batches,
                          max_grad_norm=self.config.max_grad_norm, device=self.device, dtype=self.dtype)
        if not math.isfinite(loss):
            raise TrainingError(f"the training loss became {loss} at step {self.step + 1}; lower the learning rate")
        seconds = time.perf_counter() - start
        self.step += 1  # the step's bookkeeping, all together
        self.tokens += self.config.blocks_per_step * self.config.block_size
        self.recent = (self.recent + [loss])[-RECENT_LOSSES:]
        self.step_seconds.append(seconds)
        return loss, seconds

    def _after_step(self, loss: float, seconds: float, bar: TrainProgress) -> None:
        cfg = self.config
        if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < self.total:
            val = self.evaluate()
            self.history.append({"step": self.step, "train_loss": statistics.fmean(self.recent), "val_loss": val})
            bar.write(f"step {self.step}: train loss {statistics.fmean(self.recent):.4f}, validation loss {val}")
        if self.control.on_step is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            self.control.on_step(StepInfo(self.step, self.total, loss, lr, self.tokens, seconds))
        if cfg.checkpoint_every and self.control.checkpoint_dir and self.step % cfg.checkpoint_every == 0 and self.step < self.total:
            self._save()

    def _save(self) -> None:
        save_checkpoint(
            self.control.checkpoint_dir,
            Checkpoint(
                step=self.step,
                params={n: p.detach().to("cpu", copy=True) for n, p in self.trainable.params.items()},
                optimizer=self.optimizer.state_dict(),
                rng=capture_rng(self.device),
                run=self.identity,
                progress={"tokens": self.tokens, "recent_losses": self.recent, "history": self.history,
                          "initial_val_loss": self.initial_val},
            ),
        )


def _first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key where two JSON values differ, with both values; ``None`` if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    return None if a == b else (path, a, b)
