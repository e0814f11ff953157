"""The shipped demo base model: a small GPT-2 pretrained on the general demo corpus only.

It is a standard Hugging Face model directory (config.json, model.safetensors,
generation_config.json, tokenizer files) that loads offline with plain
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``.
``provenance.json`` beside the weights records how it was trained and what it measured.
See docs/demo-data.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from organfed.shared.errors import ModelDirError

PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class BaseProvenance:
    """How the shipped base was made: size, training data, command, time and validation perplexities."""

    name: str
    parameters: int
    trained_on: str
    corpora_digest: str
    command: str
    wall_time_s: float
    tokens_seen: int
    validation_perplexity: dict[str, float]
    versions: dict[str, str]
    licence: str


def demo_base_dir() -> Path:
    """The directory of the shipped base model, inside the installed package."""
    directory = Path(str(files("organfed.shared.demo").joinpath("assets", "base")))
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json", PROVENANCE)
               if not (directory / n).is_file()]
    if missing:
        raise ModelDirError(f"the demo base model at {directory} is incomplete: missing {', '.join(missing)}")
    return directory


def demo_base_provenance() -> BaseProvenance:
    """The provenance record shipped with the base model."""
    path = demo_base_dir() / PROVENANCE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return BaseProvenance(
            name=raw["name"],
            parameters=int(raw["parameters"]),
            trained_on=raw["trained_on"],
            corpora_digest=raw["corpora_digest"],
            command=raw["command"],
            wall_time_s=float(raw["training"]["wall_time_s"]),
            tokens_seen=int(raw["training"]["tokens_seen"]),
            validation_perplexity={k: float(v) for k, v in raw["validation_perplexity"].items()},
            versions=dict(raw["versions"]),
            licence=raw["licence"],
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelDirError(f"bad provenance record {path}: {exc}") from exc
