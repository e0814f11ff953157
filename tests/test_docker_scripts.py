"""The compose deployment's scripts, run on this host without a Docker engine.

docker/compose.yaml wires setup.sh, a SuperLink, enrol.sh, three site.sh and
submit.sh together. Here the same scripts run as local processes, with their
/fed volumes moved under a temporary folder, "superlink" replaced by loopback
and free ports: what is checked is every organfed and Flower command they run
(TLS, SuperNode authentication, enrolment, node config, run config, the status
poll). The image builds and the compose file itself need Docker and are not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from organfed.server.federation import free_ports

pytestmark = pytest.mark.slow
DOCKER = Path(__file__).resolve().parent.parent / "docker"
SITES = ("hospital", "software-house", "bank")


def install_scripts(root: Path, port: int) -> Path:
    """Copies of docker/*.sh with the container paths and the SuperLink address moved onto this host."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for script in DOCKER.glob("*.sh"):
        text = (script.read_text().replace("/fed/", f"{root}/fed/").replace("/usr/local/bin/", f"{bin_dir}/")
                .replace("superlink:9200", f"127.0.0.1:{port}"))
        text = "\n".join("true" if line.startswith("chown ") else line for line in text.splitlines()) + "\n"
        (bin_dir / script.name).write_text(text)
        (bin_dir / script.name).chmod(0o755)
    return bin_dir


def test_compose_scripts_run_a_federation(tmp_path):
    superlink_port, *site_ports = free_ports(1 + len(SITES))
    bin_dir = install_scripts(tmp_path, superlink_port)
    fed = tmp_path / "fed"
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "FLWR_HOME": str(tmp_path / "flwr"), "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_TELEMETRY_ENABLED": "0"}
    started: list[subprocess.Popen] = []

    def start(args: list[str], log: str, **extra: str) -> None:
        with open(tmp_path / log, "wb") as out:
            started.append(subprocess.Popen(args, env={**env, **extra}, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True))

    def run(script: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / script)], env={**env, **extra}, capture_output=True, text=True, timeout=900)

    try:
        setup = run("setup.sh")
        assert setup.returncode == 0 and "set-up done" in setup.stdout, setup.stderr
        for site in SITES:  # a share of each site's text keeps the round short: the scripts are under test here
            data = fed / site / "data" / "train.txt"
            data.write_text(data.read_text(encoding="utf-8")[:60_000].rsplit("\n", 1)[0] + "\n", encoding="utf-8")
        # The superlink service's command line, from compose.yaml
        start(["flower-superlink", "--ssl-ca-certfile", f"{fed}/tls/ca.pem", "--ssl-certfile", f"{fed}/tls/server.pem",
               "--ssl-keyfile", f"{fed}/tls/server.key", "--enable-supernode-auth", "--disable-runtime-dependency-installation",
               "--host", "127.0.0.1", "--port", str(superlink_port)], "superlink.log")
        wait_healthy(superlink_port, fed / "tls" / "ca.pem")
        enrol = run("enrol.sh")
        assert enrol.returncode == 0 and enrol.stdout.count('"success": true') == len(SITES), enrol.stdout + enrol.stderr
        for site, port in zip(SITES, site_ports):  # each site's volume is mounted at /fed/site in its container
            script = bin_dir / f"site-{site}.sh"
            script.write_text((bin_dir / "site.sh").read_text().replace(f"{fed}/site/", f"{fed}/{site}/")
                              .replace("--port 9300", f"--port {port}"))
            script.chmod(0o755)
            start([str(script)], f"site-{site}.log", SITE_NAME=site)
        submit = run("submit.sh", ROUNDS="1", STEPS="3")
        assert submit.returncode == 0, submit.stdout + submit.stderr
        assert ": finished:completed" in submit.stdout and "| clinical |" in submit.stdout
    finally:
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def wait_healthy(port: int, ca: Path, timeout: float = 120.0) -> None:
    """The compose healthcheck, polled."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", context=context, timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the SuperLink was not healthy after {timeout:g} s")

