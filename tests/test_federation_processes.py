"""The real thing: a SuperLink and SuperNodes as local processes over loopback, with TLS and authentication.

Slow (each federation starts real processes that import torch), so marked ``slow``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from organfed.client.node import NodeConfig
from organfed.server.federation import LocalFederation
from organfed.server.flower_app import write_flower_app
from organfed.server.store import OrganStore
from organfed.shared.audit_log import verify_log
from organfed.shared.model_dir import load_model

pytestmark = pytest.mark.slow
SITES = ("north", "south", "east")  # the enrolled sites of the small_federation fixture


@pytest.fixture(scope="module")
def setup(small_federation, tmp_path_factory):
    return {**small_federation, "app": write_flower_app(tmp_path_factory.mktemp("flower-app") / "app")}


def run_config(setup, work: Path, **overrides) -> dict:
    return {
        "run-id": "proc-run", "work-dir": str(work), "base-model": str(setup["base"]),
        "key-dir": str(setup["keys"].coordinator.key_dir), "trust-dir": str(setup["keys"].coordinator.trust_dir),
        "num-rounds": 2, "min-sites": 3, "wait-for-sites": 3, "device": "cpu", "train-steps": 3,
        "train-batch-size": 2, "train-block-size": 32, "train-learning-rate": 0.01, "train-val-fraction": 0.2,
        "eval-data": f"north={setup['root'] / 'val.txt'}", "eval-max-tokens": 2000, "round-timeout": 240.0, **overrides,
    }


def start_sites(fed: LocalFederation, setup, work: Path) -> None:
    for site in SITES:
        node = NodeConfig(site, setup["base"], (setup["data"][site],), setup["keys"].sites[site].key_dir,
                          setup["keys"].sites[site].trust_dir, work / "sites" / site, "cpu")
        fed.start_supernode(site, node.to_node_config(), fed.make_node_key(site), threads=1)
    fed.wait_online(list(SITES))


def events(work: Path) -> list[dict]:
    path = work / "runs" / "proc-run" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_rounds_three_sites_with_tls_and_authentication(setup, tmp_path):
    work = tmp_path / "coordinator"
    with LocalFederation(tmp_path / "fed") as fed:
        fed.start_superlink()
        intruder = fed.start_supernode("intruder", "site-name='x'", fed.make_node_key("intruder", register=False), max_retries=1)
        assert intruder.wait(timeout=120) != 0
        assert "Failed to activate SuperNode" in fed.supervisor.log_path("intruder").read_text()
        start_sites(fed, setup, tmp_path)
        status = fed.wait(fed.submit(setup["app"], run_config(setup, work)), timeout=900)
        assert status.ok, status.details
    assert fed.close() == []  # nothing left running
    report = json.loads((work / "runs" / "proc-run" / "report.json").read_text())
    assert [len(r["accepted"]) for r in report["history"]] == [3, 3]
    assert verify_log(work / "audit.log").lines == 6
    load_model(work / "runs" / "proc-run" / "recipient")


def test_a_site_killed_mid_round_leaves_the_others_to_finish(setup, tmp_path):
    work = tmp_path / "coordinator"
    config = run_config(setup, work, **{"num-rounds": 1, "min-sites": 2, "round-timeout": 45.0})
    with LocalFederation(tmp_path / "fed") as fed:
        fed.start_superlink()
        start_sites(fed, setup, tmp_path)
        run_id = fed.submit(setup["app"], config)
        deadline = time.monotonic() + 300
        while not any(e["event"] == "round-start" for e in events(work)) and time.monotonic() < deadline:
            time.sleep(0.5)
        fed.supervisor.kill("east")
        status = fed.wait(run_id, timeout=900)
        assert status.ok, status.details
    report = json.loads((work / "runs" / "proc-run" / "report.json").read_text())
    assert sorted(report["history"][0]["accepted"]) == ["north", "south"]
    assert "east" in report["history"][0]["failures"]


def test_a_killed_coordinator_resumes_without_redoing_a_round(setup, tmp_path):
    work = tmp_path / "coordinator"
    with LocalFederation(tmp_path / "fed1") as fed:
        fed.start_superlink()
        start_sites(fed, setup, tmp_path)
        fed.submit(setup["app"], run_config(setup, work))
        deadline = time.monotonic() + 600
        while not any(e["event"] == "round-done" for e in events(work)) and time.monotonic() < deadline:
            time.sleep(0.5)
        fed.supervisor.kill("superlink")  # the coordinator dies with its SuperLink, mid-run
    first = OrganStore(work / "store").state("proc-run")
    assert first.completed_rounds == 1
    with LocalFederation(tmp_path / "fed2") as fed:
        fed.start_superlink()
        start_sites(fed, setup, tmp_path)
        status = fed.wait(fed.submit(setup["app"], run_config(setup, work)), timeout=900)
        assert status.ok, status.details
    final = OrganStore(work / "store").state("proc-run")
    assert final.completed_rounds == 2 and final.history[0] == first.history[0]
    assert any(e["event"] == "resume" and e["completed_rounds"] == 1 for e in events(work))
    assert sum(1 for e in events(work) if e["event"] == "round-start" and e["round"] == 1) == 1


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_ctrl_c_on_the_demo_ends_every_process_it_started(tmp_path):
    """The demo is interrupted once its federation is up; nothing it started may survive."""
    import signal
    import subprocess
    import sys

    work = tmp_path / "demo"
    organfed = str(Path(sys.executable).parent / "organfed")
    proc = subprocess.Popen([organfed, "demo", "--workdir", str(work), "--corpora-dir", str(tmp_path / "corpora"), "--steps", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        if line.startswith("[5/5]") or time.monotonic() > deadline:
            break
    assert _processes_mentioning(str(work)), "the federation should be running"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    time.sleep(1)
    assert _processes_mentioning(str(work)) == []
