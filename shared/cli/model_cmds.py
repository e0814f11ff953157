"""``organfed perplexity`` and ``tiny-model``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from organfed.shared.cli.commands import summary
from organfed.shared.cli.common import non_negative_int, positive_int
from organfed.shared.data import load_token_ids, load_tokenizer
from organfed.shared.evaluate import perplexity
from organfed.shared.errors import ConfigError
from organfed.shared.model_dir import context_length, load_model
from organfed.shared.tiny import FAMILIES, write_tiny_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("perplexity", help=summary("perplexity"))
    p.add_argument("--model", required=True, type=Path, help="model directory")
    p.add_argument("--data", required=True, nargs="+", type=Path, help="text files, directories or .jsonl files")
    p.add_argument("--block-size", type=positive_int, help="tokens per window (default: the model's context, at most 1024)")
    p.add_argument("--stride", type=positive_int, help="window step (default: the block size)")
    p.add_argument("--max-tokens", type=positive_int, help="evaluate only the first N tokens")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.set_defaults(run=run_perplexity)

    p = subparsers.add_parser("tiny-model", help=summary("tiny-model"))
    p.add_argument("--family", required=True, choices=FAMILIES)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--layers", type=positive_int, default=6)
    p.add_argument("--hidden", type=positive_int, default=32)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(run=run_tiny_model)


def run_perplexity(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.model)
    ids = load_token_ids(tokenizer, args.data, max_tokens=args.max_tokens)
    model = load_model(args.model, device=args.device)
    block_size = args.block_size or min(context_length(model.config), 1024)
    if block_size > context_length(model.config):
        raise ConfigError(f"--block-size {block_size} exceeds the model's context of {context_length(model.config)} tokens")
    result = perplexity(model, ids, block_size=block_size, stride=args.stride, batch_size=args.batch_size)
    print(json.dumps(result.to_dict()))
    return 0


def run_tiny_model(args: argparse.Namespace) -> int:
    out = write_tiny_model(args.family, args.out, num_layers=args.layers, hidden=args.hidden, seed=args.seed)
    print(json.dumps({"model": str(out), "family": args.family}))
    return 0
