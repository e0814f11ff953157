"""``organfed seal`` and ``organfed open``: sealed envelopes between a site and the coordinator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from organfed.shared.audit_log import AuditLog
from organfed.shared.cli.commands import summary
from organfed.shared.cli.common import layer_range, non_negative_int, positive_int
from organfed.shared.cli.keys_cmds import add_passphrase_args, passphrase
from organfed.shared.identity import TrustStore, load_identity, load_key_dir
from organfed.shared.policy import OrganPolicy
from organfed.shared.replay import ReplayCache
from organfed.shared.sealing import DEFAULT_TTL, MAX_TTL, open_envelope, seal_organ


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("seal", help=summary("seal"))
    p.add_argument("--organ", required=True, type=Path, help="organ file to seal")
    p.add_argument("--key", required=True, type=Path, metavar="KEY_DIR", help="this site's key directory")
    p.add_argument("--to", required=True, type=Path, metavar="IDENTITY", help="the coordinator's identity.json")
    p.add_argument("--run", dest="run_id", required=True, metavar="RUN_ID", help="run id the envelope is for")
    p.add_argument("--round", required=True, type=non_negative_int, help="round the envelope is for")
    p.add_argument("--ttl", type=positive_int, default=DEFAULT_TTL, help=f"seconds until the envelope expires (default {DEFAULT_TTL})")
    p.add_argument("--nonce", help="the coordinator's challenge for this round (32 hex digits; default: a random nonce)")
    p.add_argument("--out", required=True, type=Path, help="envelope file to write")
    add_passphrase_args(p)
    p.set_defaults(run=run_seal)

    p = subparsers.add_parser("open", help=summary("open"))
    p.add_argument("--envelope", required=True, type=Path, help="envelope file")
    p.add_argument("--key", required=True, type=Path, metavar="KEY_DIR", help="the coordinator's key directory")
    p.add_argument("--trust", required=True, type=Path, metavar="TRUST_DIR", help="trust directory of enrolled sites")
    p.add_argument("--run", dest="run_id", required=True, metavar="RUN_ID", help="the current run id")
    p.add_argument("--round", required=True, type=non_negative_int, help="the current round")
    p.add_argument("--out", required=True, type=Path, help="organ file to write (must not exist)")
    p.add_argument("--replay-cache", type=Path, help="replay cache file (default: KEY_DIR/replay-cache.jsonl)")
    p.add_argument("--audit-log", type=Path, help="audit log file (default: KEY_DIR/audit.jsonl)")
    p.add_argument("--expect-sender", metavar="KEY_ID", help="refuse envelopes from any other key id")
    p.add_argument("--expect-nonce", metavar="NONCE", help="the challenge issued to the sender: refuse envelopes bound to another")
    p.add_argument("--max-ttl", type=positive_int, default=MAX_TTL, help=f"refuse validity windows longer than this (default {MAX_TTL} s)")
    g = p.add_argument_group("policy (all optional; the organ's own content checks always run)")
    g.add_argument("--family", help="expected model family")
    g.add_argument("--layers", type=layer_range, help="expected source layer range S:E")
    g.add_argument("--base-fingerprint", help="expected base-model fingerprint (sha256:...)")
    g.add_argument("--max-norm", type=float, help="largest accepted L2 norm of all organ parameters")
    g.add_argument("--max-bytes", type=positive_int, help="largest accepted organ size in bytes")
    add_passphrase_args(p)
    p.set_defaults(run=run_open)


def run_seal(args: argparse.Namespace) -> int:
    sender = load_key_dir(args.key, passphrase=passphrase(args))
    out = seal_organ(args.organ, sender=sender, recipient=load_identity(args.to), run_id=args.run_id,
                     round=args.round, ttl=args.ttl, out=args.out, nonce=args.nonce)
    print(json.dumps({"envelope": str(out), "sender": sender.identity.key_id, "run": args.run_id, "round": args.round}))
    return 0


def run_open(args: argparse.Namespace) -> int:
    key = load_key_dir(args.key, passphrase=passphrase(args))
    policy = OrganPolicy(
        family=args.family, layers=(args.layers.start, args.layers.end) if args.layers else None,
        base_fingerprint=args.base_fingerprint, max_norm=args.max_norm, max_bytes=args.max_bytes,
    )
    accepted = open_envelope(
        args.envelope, key=key, trust=TrustStore(args.trust), run_id=args.run_id, round=args.round,
        replay=ReplayCache(args.replay_cache or args.key / "replay-cache.jsonl"),
        audit=AuditLog(args.audit_log or args.key / "audit.jsonl"),
        out=args.out, policy=policy, expected_sender=args.expect_sender, expected_nonce=args.expect_nonce,
        max_ttl=args.max_ttl,
    )
    print(json.dumps({"organ": str(accepted.path), "sender": accepted.sender.name, "key_id": accepted.sender.key_id,
                      "run": accepted.run_id, "round": accepted.round, "digest": accepted.digest,
                      "norm": round(accepted.norm, 6)}))
    return 0
