"""Entry point of the ``organfed`` command.

Each command module exposes ``register(subparsers)``, which adds its commands
with ``set_defaults(run=callable)``. Only the module of the command given is
imported, so the commands that need no torch (keys, trust, audit-log,
federation) start at once; ``organfed --help`` is drawn from the command table
(:mod:`organfed.shared.cli.commands`) and imports none of them. Any
:class:`OrganfedError` becomes one line on stderr and a non-zero exit; Ctrl-C
exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from organfed.shared.cli.commands import COMMANDS
from organfed.shared.errors import OrganfedError
from organfed.shared.version import __version__


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command``'s module (its commands, with all their options), or, for no or an unknown
    command, the overview: every command with its summary, no module imported."""
    parser = argparse.ArgumentParser(
        prog="organfed",
        description="Federated, privacy-preserving Neural Organ Transplantation for decoder-only transformers.",
        epilog="Run 'organfed COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"organfed {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command in COMMANDS:
        importlib.import_module(COMMANDS[command].module).register(subparsers)
    else:
        for name, entry in COMMANDS.items():
            subparsers.add_parser(name, help=entry.summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
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
