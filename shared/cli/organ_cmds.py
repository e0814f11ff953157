"""``organfed extract``, ``transplant`` and ``inspect``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from organfed.shared.cli.commands import summary
from organfed.shared.cli.common import layer_range, non_negative_int
from organfed.shared.errors import ConfigError
from organfed.shared.organ import extract_organ, load_organ, read_manifest
from organfed.shared.surgery import Placement, TransplantMode, transplant


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extract", help=summary("extract"))
    p.add_argument("--model", required=True, type=Path, help="Hugging Face model directory (safetensors)")
    p.add_argument("--layers", type=layer_range, help="half-open range S:E (default: 3 layers from floor(L/3))")
    p.add_argument("--out", required=True, type=Path, help="organ file to write (.safetensors)")
    p.set_defaults(run=run_extract)

    p = subparsers.add_parser("transplant", help=summary("transplant"))
    p.add_argument("--model", required=True, type=Path, help="recipient model directory")
    p.add_argument("--organ", required=True, action="append", metavar="ORGAN[@P]",
                   help="organ file, optionally with its own position; repeat to compose several organs")
    p.add_argument("--position", type=non_negative_int, help="position of organs given without @P (default: the organ's source start)")
    p.add_argument("--mode", choices=[m.value for m in TransplantMode], default="replace",
                   help="replace layers [P, P+k), or insert k layers after the first P (default: replace)")
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(run=run_transplant)

    p = subparsers.add_parser("inspect", help=summary("inspect"))
    p.add_argument("organ", type=Path)
    p.add_argument("--verify", action="store_true", help="also load every tensor and check digest and values")
    p.set_defaults(run=run_inspect)


def run_extract(args: argparse.Namespace) -> int:
    manifest = extract_organ(args.model, args.out, args.layers)
    print(json.dumps({"organ": str(args.out), "layers": list(manifest.source_layers),
                      "parameters": manifest.num_parameters, "dtype": manifest.dtype}))
    return 0


def parse_organ_arg(text: str, default_position: int | None) -> tuple[Path, int | None]:
    path, sep, pos = text.rpartition("@") if "@" in text else (text, "", "")
    if not sep:
        return Path(text), default_position
    try:
        return Path(path), int(pos)
    except ValueError:
        raise ConfigError(f"--organ {text!r}: the part after @ must be a layer position") from None


def run_transplant(args: argparse.Namespace) -> int:
    placements = []
    for i, text in enumerate(args.organ):
        path, position = parse_organ_arg(text, args.position)
        organ = load_organ(path)
        if position is None:
            position = organ.manifest.source_layers[0]
        placements.append(Placement(organ, position, label=f"organ {i + 1} ({path.name})"))
    result = transplant(args.model, placements, TransplantMode(args.mode), args.out, overwrite=args.overwrite)
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    print(json.dumps({"out": str(result.out), "layers": result.num_layers, "warnings": len(result.warnings)}))
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    manifest = load_organ(args.organ).manifest if args.verify else read_manifest(args.organ)
    print(json.dumps(json.loads(manifest.to_json()), indent=2, sort_keys=True))
    return 0
