"""``organfed demo``: the federated demo on embedded defaults (see :mod:`organfed.server.demo`)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from organfed.shared.cli.commands import summary
from organfed.shared.cli.common import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help=summary("demo"),
        description="Three demo sites (hospital, software house, bank) train organs of the shipped demo base on their "
                    "own domain text; a real SuperLink and SuperNodes run over loopback with TLS and SuperNode "
                    "authentication; the coordinator verifies, aggregates and transplants, and prints the report.",
    )
    p.add_argument("--workdir", type=Path, help="where the run goes (default: runs/demo-<time> in the current directory)")
    p.add_argument("--corpora-dir", type=Path, help="cache of the demo corpora (default: ~/.cache/organfed/demo-corpora)")
    p.add_argument("--rounds", type=positive_int, default=2)
    p.add_argument("--method", default="fedavg", choices=[m.value for m in _methods()])
    p.add_argument("--mode", default="in-situ", choices=["in-situ", "wrapper"], help="how sites train the organ (default: in-situ)")
    p.add_argument("--steps", type=positive_int, default=30, help="training steps per site and round (default: 30)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up on the run after this many seconds")
    p.set_defaults(run=run)

    p = subparsers.add_parser(
        "simulate", help=summary("simulate"),
        description="Runs the same ServerApp and ClientApp with N virtual sites on Flower's simulation engine (Ray), "
                    "sharing the demo domains out among them.",
    )
    p.add_argument("--sites", type=positive_int, default=6, help="number of virtual sites (default: 6)")
    p.add_argument("--workdir", type=Path, help="where the run goes (default: runs/simulate-<time>)")
    p.add_argument("--corpora-dir", type=Path, help="cache of the demo corpora (default: ~/.cache/organfed/demo-corpora)")
    p.add_argument("--rounds", type=positive_int, default=2)
    p.add_argument("--method", default="fedavg", choices=[m.value for m in _methods()])
    p.add_argument("--mode", default="in-situ", choices=["in-situ", "wrapper"])
    p.add_argument("--steps", type=positive_int, default=10, help="training steps per site and round (default: 10)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(run=run_simulate)

    p = subparsers.add_parser("demo-data", help=summary("demo-data"))
    p.add_argument("--out", type=Path, help="corpora directory (default: ~/.cache/organfed/demo-corpora)")
    p.set_defaults(run=run_demo_data)


def _methods():
    from organfed.server.aggregate import Method

    return list(Method)


def run_simulate(args: argparse.Namespace) -> int:
    from organfed.client.config import TrainMode
    from organfed.server.aggregate import Method
    from organfed.server.simulation import SimulationConfig, run_simulation

    run_simulation(SimulationConfig(
        workdir=args.workdir or Path("runs") / time.strftime("simulate-%Y%m%d-%H%M%S"),
        corpora_dir=args.corpora_dir or default_corpora_dir(), num_sites=args.sites, rounds=args.rounds,
        method=Method(args.method), mode=TrainMode(args.mode), steps=args.steps, learning_rate=args.learning_rate,
        timeout=args.timeout,
    ))
    return 0


def default_corpora_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "organfed" / "demo-corpora"


def run_demo_data(args: argparse.Namespace) -> int:
    from organfed.shared.demo.base_model import demo_base_dir
    from organfed.shared.demo.corpora import build_demo_corpora

    corpora = build_demo_corpora(args.out or default_corpora_dir())
    files = {f.domain.value: {"train": str(f.train.text), "val": str(f.val.text)} for f in corpora.domains}
    print(json.dumps({"base": str(demo_base_dir()), "corpora": files}, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    from organfed.client.config import TrainMode
    from organfed.server.aggregate import Method
    from organfed.server.demo import DemoConfig, run_demo

    config = DemoConfig(
        workdir=args.workdir or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S"),
        corpora_dir=args.corpora_dir or default_corpora_dir(),
        rounds=args.rounds, method=Method(args.method), mode=TrainMode(args.mode), steps=args.steps,
        learning_rate=args.learning_rate, device=args.device, timeout=args.timeout,
    )
    run_demo(config)
    return 0
