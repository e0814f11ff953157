"""``organfed keys new|show`` and ``organfed trust enrol|revoke|list``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from organfed.shared.cli.commands import summary
from organfed.shared.errors import IdentityError
from organfed.shared.identity import TrustStore, create_key_dir, load_identity, read_passphrase


def add_passphrase_args(p: argparse.ArgumentParser) -> None:
    """Passphrase options: a file or the name of an environment variable, never the passphrase itself."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--passphrase-file", type=Path, metavar="FILE", help="read the key passphrase from the first line of FILE")
    g.add_argument("--passphrase-env", metavar="VAR", help="read the key passphrase from environment variable VAR")


def passphrase(args: argparse.Namespace) -> bytes | None:
    return read_passphrase(file=args.passphrase_file, env=args.passphrase_env)


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help=summary("keys"))
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = sub.add_parser("new", help="create an identity in a new key directory (private keys mode 0600)")
    p.add_argument("--name", required=True, help="a name for this party, e.g. hospital-a or coordinator")
    p.add_argument("--out", required=True, type=Path, help="key directory to create")
    add_passphrase_args(p)
    p.set_defaults(run=run_new)
    p = sub.add_parser("show", help="print the public identity of a key directory or identity file")
    p.add_argument("path", type=Path, metavar="DIR_OR_FILE")
    p.set_defaults(run=run_show)

    trust = subparsers.add_parser("trust", help=summary("trust"))
    sub = trust.add_subparsers(dest="trust_command", metavar="ACTION", required=True)
    p = sub.add_parser("enrol", help="enrol a public identity (check its key id out of band first)")
    p.add_argument("trust_dir", type=Path, metavar="TRUST_DIR")
    p.add_argument("identity", type=Path, metavar="IDENTITY", help="identity.json or a key directory")
    p.add_argument("--expect-key-id", metavar="ID", help="refuse unless the identity has this key id")
    p.set_defaults(run=run_enrol)
    p = sub.add_parser("revoke", help="revoke an enrolled key id for good")
    p.add_argument("trust_dir", type=Path, metavar="TRUST_DIR")
    p.add_argument("key_id", metavar="KEY_ID")
    p.add_argument("--reason", required=True, help="why (recorded in the revocation)")
    p.set_defaults(run=run_revoke)
    p = sub.add_parser("list", help="list enrolled identities and their status as JSON lines")
    p.add_argument("trust_dir", type=Path, metavar="TRUST_DIR")
    p.set_defaults(run=run_list)


def run_new(args: argparse.Namespace) -> int:
    key_dir = create_key_dir(args.out, args.name, passphrase=passphrase(args))
    print(json.dumps({"key_dir": str(key_dir.path), "name": key_dir.identity.name, "key_id": key_dir.identity.key_id}))
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(json.dumps(load_identity(args.path).to_json(), indent=2, sort_keys=True))
    return 0


def run_enrol(args: argparse.Namespace) -> int:
    identity = load_identity(args.identity)
    if args.expect_key_id is not None and identity.key_id != args.expect_key_id:
        raise IdentityError(f"{args.identity} has key id {identity.key_id}, not {args.expect_key_id}")
    TrustStore(args.trust_dir).enrol(identity)
    print(json.dumps({"enrolled": identity.name, "key_id": identity.key_id}))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    record = TrustStore(args.trust_dir).revoke(args.key_id, args.reason)
    print(json.dumps({"revoked": record.key_id, "at": record.revoked_at}))
    return 0


def run_list(args: argparse.Namespace) -> int:
    for identity, revoked in TrustStore(args.trust_dir).entries():
        status = {"status": "revoked", "reason": revoked.reason} if revoked else {"status": "enrolled"}
        print(json.dumps({"name": identity.name, "key_id": identity.key_id, **status}))
    return 0
