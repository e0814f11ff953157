"""``organfed demo``: the whole federation on this machine, on embedded defaults.

Three sites (a hospital, a software house, a bank), each with its own demo
domain text and keys, train organs of the shipped demo base; a real SuperLink
and three SuperNodes run as local processes over loopback with TLS and
SuperNode authentication; the coordinator verifies, aggregates and
transplants, and the demo ends with the report: base vs federated perplexity
per domain.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from organfed.client.config import TrainMode
from organfed.client.node import NodeConfig
from organfed.server.aggregate import Method
from organfed.server.enrolment import FederationKeys, make_federation_keys
from organfed.server.federation import FederationError, LocalFederation
from organfed.server.flower_app import write_flower_app
from organfed.shared.demo.base_model import demo_base_dir
from organfed.shared.demo.corpora import SITE_DOMAINS, DemoCorpora, Domain, build_demo_corpora

SITES = {"hospital": Domain.CLINICAL, "software-house": Domain.CODE, "bank": Domain.FINANCE}


@dataclass(frozen=True)
class DemoConfig:
    workdir: Path
    corpora_dir: Path
    rounds: int = 2
    method: Method = Method.FEDAVG
    mode: TrainMode = TrainMode.IN_SITU
    steps: int = 30
    learning_rate: float = 1e-3
    min_sites: int = 3
    timeout: float = 1800.0
    device: str = "auto"


class EventFollower:
    """Shows the coordinator's progress events as a bar (organs accepted) and lines (the rest)."""

    def __init__(self, path: Path, total: int) -> None:
        self.path, self.offset = path, 0
        self.bar = tqdm(total=total, desc="organs accepted", unit="organ", dynamic_ncols=True)

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            fh.seek(self.offset)
            for line in fh:
                if not line.endswith("\n"):
                    break
                self.offset += len(line.encode())
                self.show(json.loads(line))

    def show(self, event: dict) -> None:
        kind = event.pop("event")
        event.pop("time", None)
        if kind == "accepted":
            self.bar.update(1)
            self.bar.set_postfix_str(f"round {event['round']}: {event['site']}")
        elif kind == "round-start":
            tqdm.write(f"round {event['round']}: training at {', '.join(event['sites'])}")
        elif kind == "round-done":
            tqdm.write(f"round {event['round']}: {event['method']} of {', '.join(event.get('accepted', []))} -> organ {event.get('result', '')}")
        else:
            tqdm.write(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in event.items()))

    def close(self) -> None:
        self.poll()
        self.bar.close()


def demo_run_config(work: Path, keys: FederationKeys, corpora: DemoCorpora, *, rounds: int, method: Method, mode: TrainMode,
                    steps: int, learning_rate: float, device: str, min_sites: int, wait_for: int) -> dict[str, object]:
    """The run config of a demo run: the shipped base, every demo domain for evaluation."""
    evals = {domain.value: corpora[domain].val.text for domain in (Domain.GENERAL, *SITE_DOMAINS)}
    return {
        "run-id": "demo", "work-dir": str(work / "coordinator"), "base-model": str(demo_base_dir()),
        "key-dir": str(keys.coordinator.key_dir), "trust-dir": str(keys.coordinator.trust_dir),
        "num-rounds": rounds, "method": method.value, "mode": mode.value,
        "min-sites": min_sites, "wait-for-sites": wait_for, "device": device,
        "val-data": ",".join(str(corpora[d].val.text) for d in SITE_DOMAINS),
        "eval-data": ",".join(f"{name}={path}" for name, path in evals.items()),
        "train-steps": steps, "train-learning-rate": learning_rate,
    }


def follow_run(fed: LocalFederation, run_id: int, work: Path, *, organs: int, timeout: float) -> None:
    """Show the run's progress until it ends; raise :class:`FederationError` (log saved) unless it completed."""
    follower = EventFollower(work / "coordinator" / "runs" / "demo" / "events.jsonl", total=organs)
    try:
        status = fed.wait(run_id, timeout, on_poll=follower.poll)
    finally:
        follower.close()
    if not status.ok:
        (work / "run.log").write_text(fed.run_log(run_id))
        raise FederationError(f"the run ended {status.status}: {status.details} (log: {work / 'run.log'})")


def show_report(work: Path) -> Path:
    """Print the demo run's report and where its files are; return the report's path."""
    report = work / "coordinator" / "runs" / "demo" / "report.md"
    print()
    print(report.read_text())
    print(f"report: {report}\nplots:  {report.parent / 'perplexity_by_domain.png'}, {report.parent / 'perplexity_by_round.png'}")
    return report


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit while the demo runs, so its clean-up always happens."""
    def handler(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_demo(config: DemoConfig) -> Path:
    """Run the demo federation; return the report's path. Every process started is ended, whatever happens."""
    with terminate_as_exit():
        return _run_demo(config)


def _run_demo(config: DemoConfig) -> Path:
    work = config.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"organfed demo in {work}", flush=True)
    print("[1/5] demo data: one domain corpus per site (built once, cached)", flush=True)
    corpora = build_demo_corpora(config.corpora_dir)
    print("[2/5] identities: coordinator and sites, each enrolled with the other side", flush=True)
    keys = make_federation_keys(work / "keys", list(SITES))
    app_dir = write_flower_app(work / "app")
    threads = max(1, (os.cpu_count() or 2) // len(SITES))
    with LocalFederation(work / "federation") as fed:
        print("[3/5] SuperLink with TLS and SuperNode authentication", flush=True)
        fed.start_superlink()
        print(f"[4/5] {len(SITES)} SuperNodes: " + ", ".join(f"{s} ({d.value} text)" for s, d in SITES.items()), flush=True)
        for site, domain in SITES.items():
            node = NodeConfig(site, demo_base_dir(), (corpora[domain].train.text,), keys.sites[site].key_dir,
                              keys.sites[site].trust_dir, work / "sites" / site / "state", config.device)
            fed.start_supernode(site, node.to_node_config(), fed.make_node_key(site), threads=threads)
        fed.wait_online(list(SITES))
        print(f"[5/5] federated run: {config.rounds} rounds, {config.method.value}, {config.mode.value} training, {config.steps} steps per round", flush=True)
        run_config = demo_run_config(work, keys, corpora, rounds=config.rounds, method=config.method, mode=config.mode,
                                     steps=config.steps, learning_rate=config.learning_rate, device=config.device,
                                     min_sites=config.min_sites, wait_for=len(SITES))
        follow_run(fed, fed.submit(app_dir, run_config), work, organs=config.rounds * len(SITES), timeout=config.timeout)
    report = show_report(work)
    print(f"done in {time.monotonic() - started:.0f} s; every process started by the demo has been stopped")
    return report
