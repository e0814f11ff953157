"""``organfed audit-log verify``: check the coordinator's hash-chained audit log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from organfed.shared.audit_log import parse_anchor, verify_log
from organfed.shared.cli.commands import summary
from organfed.shared.errors import AuditLogError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("audit-log", help=summary("audit-log"))
    sub = p.add_subparsers(dest="audit_log_command", metavar="ACTION", required=True)
    v = sub.add_parser("verify", help="verify the hash chain and head; print the line count and head hash")
    v.add_argument("log", type=Path, metavar="LOG")
    v.add_argument("--anchor", type=_anchor, metavar="N:HASH",
                   help="also require line N to hash to HASH (a line count and head printed and published earlier)")
    v.set_defaults(run=run_verify)


def _anchor(text: str) -> tuple[int, str]:
    try:
        return parse_anchor(text)
    except AuditLogError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_verify(args: argparse.Namespace) -> int:
    report = verify_log(args.log, anchor=args.anchor)
    print(json.dumps({"log": str(args.log), "lines": report.lines, "head": report.head,
                      "anchor": f"{report.lines}:{report.head}", "ok": True}))
    return 0
