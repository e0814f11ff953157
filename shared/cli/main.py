"""Entry point of the ``organfed`` command.

Each command-group module exposes ``register(subparsers)``, which adds its
commands with ``set_defaults(run=callable)``. Only the module of the command
given is imported, so the commands that need no torch (keys, trust, audit-log,
federation) start at once; ``organfed --help`` imports them all. Any
:class:`OrganfedError` becomes one line on stderr and a non-zero exit; Ctrl-C
exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from organfed.shared.errors import OrganfedError
from organfed.shared.version import __version__

COMMAND_MODULES = {
    "organfed.shared.cli.organ_cmds": ("extract", "transplant", "inspect"),
    "organfed.shared.cli.model_cmds": ("perplexity", "tiny-model"),
    "organfed.shared.cli.demo_cmd": ("demo", "simulate", "demo-data"),
    "organfed.shared.cli.bench_cmd": ("bench",),
    "organfed.shared.cli.train_cmds": ("train", "baseline", "sweep"),
    "organfed.shared.cli.keys_cmds": ("keys", "trust"),
    "organfed.shared.cli.seal_cmds": ("seal", "open"),
    "organfed.shared.cli.audit_cmds": ("audit-log",),
    "organfed.shared.cli.federation_cmds": ("federation",),
}
"""Each command-group module and the top-level commands it registers."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command``'s group only (the others are not imported)."""
    parser = argparse.ArgumentParser(
        prog="organfed",
        description="Federated, privacy-preserving Neural Organ Transplantation for decoder-only transformers.",
    )
    parser.add_argument("--version", action="version", version=f"organfed {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = [m for m, names in COMMAND_MODULES.items() if command in names] or list(COMMAND_MODULES)
    for name in chosen:
        importlib.import_module(name).register(subparsers)
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
