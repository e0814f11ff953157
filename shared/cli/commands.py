"""The table of ``organfed`` commands: which module registers each, and its one-line summary.

``organfed --help`` is drawn from this table alone, so it starts at once; the
command modules (some import torch) are imported only when their command runs.
Each module takes its commands' summaries from here, so they are written once.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    module: str
    summary: str


_CLI = "organfed.shared.cli."

COMMANDS: dict[str, Command] = {
    "demo": Command(_CLI + "demo_cmd", "run the whole federation on this machine: SuperLink, 3 SuperNodes, TLS, authentication, report"),
    "simulate": Command(_CLI + "demo_cmd", "many virtual sites on Flower's simulation engine (needs organfed[simulation])"),
    "demo-data": Command(_CLI + "demo_cmd", "build (or find) the demo corpora and print where they and the demo base are"),
    "extract": Command(_CLI + "organ_cmds", "copy a block of layers out of a model into an organ file"),
    "transplant": Command(_CLI + "organ_cmds", "put organs into a recipient model, writing a new model directory"),
    "inspect": Command(_CLI + "organ_cmds", "print an organ's manifest as JSON (checks the whole organ with --verify)"),
    "train": Command(_CLI + "train_cmds", "train an organ on text (wrapper: the paper's method; in-situ: inside the frozen model)"),
    "baseline": Command(_CLI + "train_cmds", "train a LoRA or full fine-tuning baseline through the same pipeline"),
    "sweep": Command(_CLI + "train_cmds", "transplant an organ at each position; perplexity table (JSON, Markdown) and plot (PNG)"),
    "perplexity": Command(_CLI + "model_cmds", "measure a model's perplexity on text; prints JSON"),
    "tiny-model": Command(_CLI + "model_cmds", "write a tiny random-init model with a byte tokenizer (no download)"),
    "keys": Command(_CLI + "keys_cmds", "create or show an identity (signing and encryption keys)"),
    "trust": Command(_CLI + "keys_cmds", "manage a trust directory of enrolled identities"),
    "seal": Command(_CLI + "seal_cmds", "sign an organ, then encrypt it to the coordinator"),
    "open": Command(_CLI + "seal_cmds", "verify and decrypt an envelope; refuse anything that does not check out"),
    "audit-log": Command(_CLI + "audit_cmds", "check the coordinator's audit log of accepted and refused envelopes"),
    "federation": Command(_CLI + "federation_cmds", "make TLS files, SuperNode keys, the Flower App folder and node configs"),
    "bench": Command(_CLI + "bench_cmd", "run a benchmark (speed and memory, measured side by side)"),
}


def summary(name: str) -> str:
    """The one-line help of command ``name``."""
    return COMMANDS[name].summary
