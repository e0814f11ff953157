"""``organfed federation ...``: the files a real (multi-machine) Flower deployment needs.

``tls`` makes a CA and the SuperLink's certificate, ``node-key`` a SuperNode
authentication key (enrol its ``.pub`` with ``flwr supernode register``),
``app`` the Flower App folder to pass to ``flwr run``, and ``node-config``
the ``--node-config`` string of a site's SuperNode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from organfed.shared.cli.commands import summary
from organfed.shared.cli.common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("federation", help=summary("federation"))
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    a = actions.add_parser("tls", help="a CA and a server certificate for the SuperLink (keys mode 0600)")
    a.add_argument("--out", required=True, type=Path)
    a.add_argument("--host", action="append", required=True, help="DNS name or IP address the SuperLink is reached at (repeat)")
    a.add_argument("--days", type=positive_int, default=365)
    a.set_defaults(run=run_tls)

    a = actions.add_parser("node-key", help="a SuperNode authentication key (ECDSA P-384, OpenSSH format) and its .pub")
    a.add_argument("--out", required=True, type=Path, help="private key path; the public key goes to OUT.pub")
    a.set_defaults(run=run_node_key)

    a = actions.add_parser("app", help="the Flower App folder (a pyproject.toml naming organfed's apps)")
    a.add_argument("--out", required=True, type=Path)
    a.set_defaults(run=run_app)

    a = actions.add_parser("node-config", help="print the --node-config string of a site's SuperNode")
    a.add_argument("--site-name", required=True)
    a.add_argument("--model-dir", required=True, type=Path)
    a.add_argument("--data", required=True, nargs="+", type=Path)
    a.add_argument("--key-dir", required=True, type=Path)
    a.add_argument("--trust-dir", required=True, type=Path, help="must hold the coordinator's identity")
    a.add_argument("--state-dir", required=True, type=Path)
    a.add_argument("--device", default="auto")
    a.set_defaults(run=run_node_config)


def run_tls(args: argparse.Namespace) -> int:
    from organfed.shared.crypto import write_tls_files

    files = write_tls_files(args.out, hosts=args.host, days=args.days)
    print(json.dumps({"ca": str(files.ca), "cert": str(files.cert), "key": str(files.key)}))
    return 0


def run_node_key(args: argparse.Namespace) -> int:
    from organfed.shared.crypto import write_node_auth_key

    private, public = write_node_auth_key(args.out)
    print(json.dumps({"private": str(private), "public": str(public)}))
    return 0


def run_app(args: argparse.Namespace) -> int:
    from organfed.server.flower_app import write_flower_app

    print(json.dumps({"app": str(write_flower_app(args.out))}))
    return 0


def run_node_config(args: argparse.Namespace) -> int:
    from organfed.client.node import NodeConfig

    node = NodeConfig(args.site_name, args.model_dir, tuple(args.data), args.key_dir, args.trust_dir, args.state_dir, args.device)
    print(node.to_node_config())
    return 0
