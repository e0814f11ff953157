"""``organfed demo``: the main job on embedded defaults."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from organfed.shared.data import load_token_ids, load_tokenizer
from organfed.shared.evaluate import perplexity
from organfed.shared.model_dir import load_model
from organfed.shared.organ import extract_organ, load_organ
from organfed.shared.surgery import Placement, TransplantMode, transplant
from organfed.shared.tiny import write_tiny_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the end-to-end demo on embedded defaults")
    p.add_argument("--workdir", type=Path, help="where to write the run (default: a temporary directory)")
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    work = args.workdir or Path(tempfile.mkdtemp(prefix="organfed-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    text = Path(__file__).resolve().parents[1]
    print(f"[1/4] tiny GPT-2 base in {work / 'base'}")
    base = write_tiny_model("gpt2", work / "base", num_layers=6)
    print("[2/4] extract layers 2:5 as an organ")
    extract_organ(base, work / "organ.safetensors")
    organ = load_organ(work / "organ.safetensors")
    print("[3/4] insert the organ after layer 2 (6 -> 9 layers)")
    transplant(base, [Placement(organ, 2)], TransplantMode.INSERT, work / "recipient", overwrite=True)
    print("[4/4] perplexity on organfed's own source text")
    ids = load_token_ids(load_tokenizer(base), [text], max_tokens=20_000)
    report = {name: perplexity(load_model(work / name), ids, block_size=128).to_dict() for name in ("base", "recipient")}
    print(json.dumps(report, indent=2))
    return 0
