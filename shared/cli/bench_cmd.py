"""``organfed bench NAME``: run one benchmark; figures go to stdout (JSON) and, with --markdown, a table."""

from __future__ import annotations

import argparse
import importlib

from organfed.shared.cli.commands import summary

BENCH_MODULES = (
    "organfed.shared.bench.surgery",
    "organfed.shared.bench.training",
    "organfed.shared.bench.envelope",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help=summary("bench"))
    benches = p.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name in BENCH_MODULES:
        importlib.import_module(name).register(benches)
