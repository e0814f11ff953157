"""``organfed train``, ``baseline`` and ``sweep``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from organfed.client.checkpoint import remove_checkpoint
from organfed.client.config import Precision, Schedule, TrainConfig, TrainMode
from organfed.client.loop import RunControl
from organfed.client.step import usable_device
from organfed.client.train import train_organ
from organfed.shared.cli.commands import summary
from organfed.shared.cli.common import layer_range, non_negative_int, positive_int
from organfed.shared.data import load_token_ids, load_tokenizer
from organfed.shared.errors import ConfigError
from organfed.shared.model_dir import context_length, open_model_dir
from organfed.shared.organ import load_organ, save_organ
from organfed.shared.surgery import TransplantMode
from organfed.shared.sweep import position_sweep, write_sweep


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The knobs shared by ``train`` and ``baseline``."""
    p.add_argument("--model", required=True, type=Path, help="base model directory (safetensors)")
    p.add_argument("--data", required=True, nargs="+", type=Path, help="text files, directories or .jsonl files (a 'text' field)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, help="optimizer steps (default: 200)")
    length.add_argument("--epochs", type=float, help="passes over the training blocks, instead of --steps")
    p.add_argument("--batch-size", type=positive_int, default=8, help="blocks per micro-batch (default: 8)")
    p.add_argument("--block-size", type=positive_int, default=128, help="tokens per block (default: 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of AdamW (default: 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="AdamW weight decay on weight matrices; biases and norms are never decayed (default: 0)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=0, help="linear warm-up steps (default: 0)")
    p.add_argument("--schedule", choices=[s.value for s in Schedule], default="cosine",
                   help="after warm-up: cosine decay to --min-lr-ratio of the peak, or constant (default: cosine)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches per optimizer step (default: 1)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the gradient norm; 0 turns it off (default: 1)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data order, dropout and initial weights")
    p.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of the train/validation block split (default: 0)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of blocks held out for validation (default: 0.1)")
    p.add_argument("--eval-every", type=positive_int, help="report validation loss every N steps (default: at the start and end)")
    p.add_argument("--eval-blocks", type=positive_int, default=256, help="validation blocks per evaluation (default: 256)")
    p.add_argument("--checkpoint-every", type=positive_int, default=100, help="checkpoint every N steps (default: 100; Ctrl-C also checkpoints)")
    p.add_argument("--checkpoint-dir", type=Path, help="where checkpoints go (default: OUT.ckpt beside the output)")
    p.add_argument("--resume", action="store_true", help="continue the run from its checkpoint")
    p.add_argument("--keep-checkpoint", action="store_true", help="keep the checkpoint after the run completes")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto picks CUDA when present (default: auto)")
    p.add_argument("--precision", choices=[v.value for v in Precision], default="auto",
                   help="auto: bf16 autocast where the CUDA device supports it, else fp32 (default: auto)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help=summary("train"))
    add_training_args(p)
    p.add_argument("--layers", type=layer_range, help="half-open range S:E of the organ (default: 3 layers from floor(L/3))")
    p.add_argument("--mode", choices=[m.value for m in TrainMode], default="in-situ",
                   help="wrapper: Embed -> organ -> Head with frozen ends; in-situ: at its position in the frozen model (default)")
    p.add_argument("--organ", type=Path, help="start from this organ instead of the base's layers")
    p.add_argument("--out", required=True, type=Path, help="organ file to write")
    p.set_defaults(run=run_train)

    p = subparsers.add_parser("baseline", help=summary("baseline"))
    add_training_args(p)
    p.add_argument("--method", required=True, choices=["lora", "full"])
    p.add_argument("--lora-rank", type=positive_int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--lora-targets", default="all-linear", help="comma-separated module names, or all-linear (default)")
    p.add_argument("--out", required=True, type=Path, help="model directory to write (LoRA merged in)")
    p.set_defaults(run=run_baseline)

    p = subparsers.add_parser("sweep", help=summary("sweep"))
    p.add_argument("--model", required=True, type=Path, help="recipient model directory")
    p.add_argument("--organ", required=True, type=Path)
    p.add_argument("--data", required=True, nargs="+", type=Path, help="domain validation text")
    p.add_argument("--general-data", nargs="+", type=Path, help="general text, to show forgetting")
    p.add_argument("--positions", type=layer_range, help="half-open range A:B of positions (default: every valid one)")
    p.add_argument("--mode", choices=[m.value for m in TransplantMode], default="replace")
    p.add_argument("--block-size", type=positive_int, help="tokens per window (default: the model's context, at most 1024)")
    p.add_argument("--max-tokens", type=positive_int, help="evaluate only the first N tokens of each text")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--label", help="name of the organ in the table and plot (default: the file name)")
    p.add_argument("--out", required=True, type=Path, help="output prefix: writes PREFIX.json, PREFIX.md and PREFIX.png")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=run_sweep)


def config_from_args(args: argparse.Namespace, mode: str = TrainMode.IN_SITU.value) -> TrainConfig:
    return TrainConfig(
        mode=mode, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, block_size=args.block_size,
        learning_rate=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, schedule=args.schedule,
        min_lr_ratio=args.min_lr_ratio, grad_accum=args.grad_accum, max_grad_norm=args.max_grad_norm or None,
        seed=args.seed, split_seed=args.split_seed, val_fraction=args.val_fraction, eval_every=args.eval_every,
        eval_blocks=args.eval_blocks, checkpoint_every=args.checkpoint_every, device=args.device, precision=args.precision,
    )


def _control(args: argparse.Namespace, desc: str) -> RunControl:
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{args.out} already exists (pass --overwrite to replace it)")
    directory = args.checkpoint_dir or args.out.with_name(args.out.name + ".ckpt")
    return RunControl(checkpoint_dir=directory, resume=args.resume, progress=False if args.no_progress else None, desc=desc)


def run_train(args: argparse.Namespace) -> int:
    config = config_from_args(args, args.mode)
    control = _control(args, f"train {args.mode}")
    organ = load_organ(args.organ) if args.organ else None
    result = train_organ(args.model, args.data, config, organ=organ, layers=args.layers, control=control)
    save_organ(result.organ, args.out)
    if not args.keep_checkpoint:
        remove_checkpoint(control.checkpoint_dir)
    print(json.dumps({"organ": str(args.out), **result.metrics()}))
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    from organfed.client.baselines import LoraSettings, train_baseline  # PEFT loads only for this command

    config = config_from_args(args)
    control = _control(args, f"baseline {args.method}")
    targets = args.lora_targets if args.lora_targets == "all-linear" else tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    lora = LoraSettings(rank=args.lora_rank, alpha=args.lora_alpha, dropout=args.lora_dropout, target_modules=targets)
    result = train_baseline(args.model, args.data, config, method=args.method, lora=lora, control=control)
    result.save(args.out, args.model, overwrite=args.overwrite)
    if not args.keep_checkpoint:
        remove_checkpoint(control.checkpoint_dir)
    print(json.dumps({"model": str(args.out), "method": args.method, **result.stats.to_dict(), "data": result.data.to_dict()}))
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    usable_device(args.device)
    md = open_model_dir(args.model)
    block_size = args.block_size or min(context_length(md.config), 1024)
    if block_size > context_length(md.config):
        raise ConfigError(f"--block-size {block_size} exceeds the model's context of {context_length(md.config)} tokens")
    organ = load_organ(args.organ)
    tokenizer = load_tokenizer(args.model)
    domain = load_token_ids(tokenizer, args.data, max_tokens=args.max_tokens)
    general = load_token_ids(tokenizer, args.general_data, max_tokens=args.max_tokens) if args.general_data else None
    result = position_sweep(
        args.model, organ, domain, mode=TransplantMode(args.mode), block_size=block_size, general_ids=general,
        positions=list(args.positions) if args.positions else None, batch_size=args.batch_size, device=args.device,
        label=args.label or args.organ.stem, progress=False if args.no_progress else None,
    )
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    paths = write_sweep([result], args.out)
    best = result.best()
    print(json.dumps({"best_position": best.position, "best_domain_perplexity": best.domain,
                      "base_domain_perplexity": result.base_domain, **{k: str(v) for k, v in paths.items()}}))
    if best.domain >= result.base_domain:
        print("note: no position beats the base on the domain text", file=sys.stderr)
    return 0
