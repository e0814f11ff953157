"""The usual alternatives to an organ, trained through the same data pipeline and loop.

``lora``: low-rank adapters (PEFT) on every linear layer of the base, merged into
the weights for evaluation. ``full``: every parameter of the base trained.
Either returns a plain causal LM that :meth:`BaselineResult.save` writes as a
Hugging Face model directory, with the run's provenance beside the weights.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import peft
import torch
from torch import nn
from transformers import PreTrainedModel

from organfed.client.config import TrainConfig
from organfed.client.loop import LoopStats, RunControl, run_training
from organfed.client.step import Trainable
from organfed.client.train import check_data, load_data, run_record
from organfed.shared.atomic import fsync_dir, write_json_atomic
from organfed.shared.blocks import BlockData, DataStats
from organfed.shared.data import load_tokenizer
from organfed.shared.errors import ConfigError
from organfed.shared.families import FamilyAdapter
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.model_dir import ModelDir, load_model, open_model_dir
from organfed.shared.version import __version__

PROVENANCE_NAME = "organfed_baseline.json"


class BaselineMethod(str, Enum):
    LORA = "lora"
    FULL = "full"


@dataclass(frozen=True)
class LoraSettings:
    """LoRA's knobs; ``target_modules`` ``"all-linear"`` is every linear layer except the LM head."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LoraSettings.rank must be an integer >= 1, got {self.rank!r}")
        if not self.alpha > 0:
            raise ConfigError(f"LoraSettings.alpha must be > 0, got {self.alpha!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"LoraSettings.dropout must lie in [0, 1), got {self.dropout!r}")
        if not self.target_modules:
            raise ConfigError("LoraSettings.target_modules must name at least one module (or be 'all-linear')")


class CausalLM(nn.Module):
    """A causal LM as ``module(input_ids) -> logits``, run through its family adapter."""

    def __init__(self, model: PreTrainedModel, adapter: FamilyAdapter) -> None:
        super().__init__()
        self.model, self.adapter = model, adapter

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.adapter.forward(self.model, input_ids)


@dataclass(frozen=True)
class BaselineResult:
    """The trained model (LoRA merged in), the run's metrics and the data's counts."""

    model: PreTrainedModel
    method: BaselineMethod
    stats: LoopStats
    data: DataStats
    provenance: dict[str, Any]

    def save(self, out: Path | str, tokenizer_from: Path | str, *, overwrite: bool = False) -> Path:
        """Write the model, its tokenizer and the provenance to a new directory, atomically."""
        out = Path(out)
        if out.exists() and not overwrite:
            raise ConfigError(f"{out} already exists (pass --overwrite to replace it)")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}.", dir=out.parent))
        try:
            self.model.save_pretrained(tmp)
            load_tokenizer(tokenizer_from).save_pretrained(tmp)
            write_json_atomic(tmp / PROVENANCE_NAME, self.provenance)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
            fsync_dir(out.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def baseline_trainable(md: ModelDir, method: BaselineMethod, lora: LoraSettings, seed: int) -> tuple[Trainable, peft.PeftModel | None]:
    """The base model set up for ``method`` (LoRA layers injected, or every weight trainable), and PEFT's wrapper."""
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notes reached through PEFT
        torch.manual_seed(seed)  # LoRA's initial A matrices
        model = load_model(md.path, dtype=torch.float32)
        wrapped = None
        if method is BaselineMethod.LORA:
            targets = lora.target_modules if isinstance(lora.target_modules, str) else _check_targets(model, lora.target_modules)
            conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())  # GPT-2 stores linear layers transposed
            config = peft.LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                     target_modules=targets, fan_in_fan_out=conv1d)
            wrapped = peft.get_peft_model(model, config)
            model = wrapped.base_model.model
        else:
            model.requires_grad_(True)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    return Trainable(CausalLM(model, md.adapter), params), wrapped


def _check_targets(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """``targets`` if each names some linear layer of ``model`` (PEFT matches a name's last parts), else a ConfigError."""
    linear = {name for name, m in model.named_modules() if type(m).__name__ in ("Linear", "Conv1D") and name}
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linear)]
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ConfigError(f"LoRA target(s) {', '.join(missing)} match no linear layer; this model has {', '.join(short)}")
    return list(targets)


def train_baseline(
    model_dir: Path | str,
    data: Sequence[Path | str] | BlockData,
    config: TrainConfig = TrainConfig(),
    *,
    method: BaselineMethod | str,
    lora: LoraSettings = LoraSettings(),
    control: RunControl = RunControl(),
) -> BaselineResult:
    """Train the base in ``model_dir`` with ``method`` on ``data``; ``config.mode`` is not used."""
    method = BaselineMethod(method)
    md = open_model_dir(model_dir)
    blocks = data if isinstance(data, BlockData) else load_data(md.path, data, config)
    check_data(md, blocks, config)
    trainable, wrapped = baseline_trainable(md, method, lora, config.seed)
    identity = {
        "kind": f"baseline-{method.value}",
        "hyperparameters": config.hyperparameters(),
        "lora": asdict(lora) if wrapped is not None else None,
        "data_digest": blocks.stats.digest,
        "base_fingerprint": fingerprint_model_dir(md.path),
    }
    stats = run_training(trainable, blocks, config, identity, control)
    final = wrapped.merge_and_unload() if wrapped is not None else trainable.module.model
    final.requires_grad_(False)
    provenance = {
        "organfed_version": __version__,
        "method": method.value,
        "base_fingerprint": identity["base_fingerprint"],
        "lora": identity["lora"],
        **run_record(config, stats, blocks.stats),
    }
    return BaselineResult(final.to("cpu").eval(), method, stats, blocks.stats, provenance)
