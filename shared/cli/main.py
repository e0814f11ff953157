"""Entry point of the ``organfed`` command.

Each command-group module exposes ``register(subparsers)``, which adds its
commands with ``set_defaults(run=callable)``. Any :class:`OrganfedError`
becomes one line on stderr and a non-zero exit; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from organfed.shared.errors import OrganfedError
from organfed.shared.version import __version__

COMMAND_MODULES = (
    "organfed.shared.cli.organ_cmds",
    "organfed.shared.cli.model_cmds",
    "organfed.shared.cli.demo_cmd",
    "organfed.shared.cli.bench_cmd",
    "organfed.shared.cli.train_cmds",
    "organfed.shared.cli.keys_cmds",
    "organfed.shared.cli.seal_cmds",
    "organfed.shared.cli.audit_cmds",
    "organfed.shared.cli.federation_cmds",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="organfed",
        description="Federated, privacy-preserving Neural Organ Transplantation for decoder-only transformers.",
    )
    parser.add_argument("--version", action="version", version=f"organfed {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except OrganfedError as exc:
        print(f"organfed {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"organfed {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
