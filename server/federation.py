"""A Flower federation on this machine: a SuperLink and SuperNodes as real processes over loopback.

TLS from a CA made for the run, SuperNode authentication with keys enrolled
before each SuperNode starts, free ports picked at start, every process
(and what it spawns) ended on close, and the run's real final status read
from the SuperLink (``flwr run --stream`` exits 0 even for a failed run).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from organfed.server.processes import Supervisor
from organfed.shared.crypto import TlsFiles, write_node_auth_key, write_tls_files
from organfed.shared.errors import OrganfedError

CONNECTION = "organfed-local"
BIN = Path(sys.executable).parent


class FederationError(OrganfedError):
    """The local federation could not start, or a run did not finish well."""


@dataclass(frozen=True)
class RunStatus:
    run_id: int
    status: str
    details: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.status == "finished:completed"


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def toml_values(values: dict[str, Any]) -> str:
    """``k=v`` pairs in Flower's TOML-per-value syntax (strings as literal strings)."""
    parts = []
    for key, value in values.items():
        if isinstance(value, str):
            if "'" in value:
                raise FederationError(f"{key}: value {value!r} may not contain a single quote")
            parts.append(f"{key}='{value}'")
        else:
            parts.append(f"{key}={json.dumps(value)}")
    return " ".join(parts)


class LocalFederation:
    """Start, use and end a SuperLink and its SuperNodes; use as a context manager."""

    def __init__(self, work: Path, *, env: dict[str, str] | None = None) -> None:
        self.work = work.resolve()
        self.supervisor = Supervisor(self.work / "logs")
        self.tls: TlsFiles | None = None
        self.port = 0
        self._env = {
            **os.environ, **(env or {}),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1",
        }

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self, home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        path = self.work / "flwr-home" / home
        path.mkdir(parents=True, exist_ok=True)
        return {**self._env, "FLWR_HOME": str(path), **(extra or {})}

    # -- SuperLink ---------------------------------------------------------------------------

    def start_superlink(self, *, simulation: bool = False, timeout: float = 90.0) -> None:
        """Start the SuperLink: TLS and SuperNode authentication, or (``simulation``) Flower's
        simulation engine, which runs virtual SuperNodes inside its own process over no network."""
        (self.port,) = free_ports(1)
        cmd = [str(BIN / "flower-superlink"), "--disable-runtime-dependency-installation", "--host", "127.0.0.1", "--port", str(self.port)]
        if simulation:
            cmd += ["--simulation", "--insecure"]
            connection = 'insecure = true'
        else:
            self.tls = write_tls_files(self.work / "tls")
            cmd += ["--ssl-ca-certfile", str(self.tls.ca), "--ssl-certfile", str(self.tls.cert), "--ssl-keyfile",
                    str(self.tls.key), "--enable-supernode-auth"]
            connection = f'root-certificates = "{self.tls.ca}"'
        proc = self.supervisor.start("superlink", cmd, self.env("superlink", {"RAY_USAGE_STATS_ENABLED": "0"}))
        self._wait_healthy(proc, timeout)
        cli_home = self.work / "flwr-home" / "cli"
        cli_home.mkdir(parents=True, exist_ok=True)
        (cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\n{connection}\n'
        )

    def _wait_healthy(self, proc: subprocess.Popen, timeout: float) -> None:
        scheme, context = ("https", ssl.create_default_context(cafile=str(self.tls.ca))) if self.tls else ("http", None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise FederationError(f"the SuperLink exited with code {proc.returncode}; see {self.supervisor.log_path('superlink')}")
            try:
                with urllib.request.urlopen(f"{scheme}://127.0.0.1:{self.port}/health", context=context, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise FederationError(f"the SuperLink was not healthy after {timeout:g} s; see {self.supervisor.log_path('superlink')}")

    def flwr(self, *args: str, timeout: float = 120.0, check: bool = True) -> dict[str, Any]:
        """Run the ``flwr`` CLI against this SuperLink; return its JSON output."""
        cmd = [str(BIN / "flwr"), *args, "--format", "json"]
        out = subprocess.run(cmd, env=self.env("cli"), cwd=self.work, capture_output=True, text=True, timeout=timeout)
        with open(self.supervisor.log_path("flwr-cli"), "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(cmd)}\n[rc={out.returncode}]\n{out.stdout}{out.stderr}\n")
        start = out.stdout.find("{")
        data = json.loads(out.stdout[start:]) if start >= 0 else {}
        if check and (out.returncode != 0 or not data.get("success", False)):
            raise FederationError(f"flwr {' '.join(args[:2])} failed: {(out.stdout + out.stderr).strip()[-500:]}")
        return data

    # -- SuperNodes --------------------------------------------------------------------------

    def make_node_key(self, name: str, register: bool = True) -> Path:
        """A SuperNode authentication key (ECDSA P-384, OpenSSH format), enrolled unless ``register`` is False."""
        private, public = write_node_auth_key(self.work / "node-keys" / name)
        if register:
            self.flwr("supernode", "register", str(public), CONNECTION)
        return private

    def start_supernode(self, name: str, node_config: str, auth_key: Path, *, threads: int | None = None, max_retries: int = 5) -> subprocess.Popen:
        if self.tls is None:
            raise FederationError("SuperNodes join a SuperLink started with TLS (not a simulation SuperLink)")
        (port,) = free_ports(1)
        cmd = [
            str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{self.port}", "--root-certificates", str(self.tls.ca),
            "--auth-supernode-private-key", str(auth_key), "--node-config", node_config, "--host", "127.0.0.1",
            "--port", str(port), "--ssl-ca-certfile", str(self.tls.ca), "--ssl-certfile", str(self.tls.cert),
            "--ssl-keyfile", str(self.tls.key), "--max-retries", str(max_retries), "--max-wait-time", "60",
        ]
        extra = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else None
        return self.supervisor.start(name, cmd, self.env(name, extra))

    def wait_online(self, names: Sequence[str], timeout: float = 120.0) -> list[int]:
        """Wait until the SuperNodes ``names`` are online; fail at once if one of them exits."""
        count = len(names)
        deadline = time.monotonic() + timeout
        online: list[int] = []
        while time.monotonic() < deadline:
            dead = [n for n in names if self.supervisor.procs[n].poll() is not None]
            if dead:
                raise FederationError(f"SuperNode {dead[0]} exited; see {self.supervisor.log_path(dead[0])}")
            nodes = self.flwr("supernode", "list", CONNECTION, check=False).get("nodes", [])
            online = [int(n["node-id"]) for n in nodes if n.get("status") == "online"]
            if len(online) >= count:
                return online
            self.supervisor.track()
            time.sleep(0.5)
        raise FederationError(f"{len(online)} of {count} SuperNodes online after {timeout:g} s")

    # -- runs --------------------------------------------------------------------------------

    def submit(self, app_dir: Path, run_config: dict[str, Any], *, virtual_nodes: int = 0) -> int:
        """Start a run; on a simulation SuperLink, with ``virtual_nodes`` virtual SuperNodes."""
        args = ["run", str(app_dir), CONNECTION, "--run-config", toml_values(run_config)]
        if virtual_nodes:
            args += ["--federation-config", f"num-supernodes={virtual_nodes} client-resources-num-cpus=1"]
        return int(self.flwr(*args)["run-id"])

    def status(self, run_id: int) -> RunStatus:
        run = self.flwr("list", CONNECTION, "--run-id", str(run_id))["runs"][0]
        return RunStatus(run_id, run["status"], run.get("status-details", ""), float(run.get("elapsed") or 0.0))

    def wait(self, run_id: int, timeout: float, on_poll=None, interval: float = 2.0) -> RunStatus:
        """Poll until the run has finished (or stop it after ``timeout``); ``on_poll()`` runs between polls."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(run_id)
            if status.status.startswith("finished"):
                return status
            if time.monotonic() >= deadline:
                self.flwr("stop", str(run_id), CONNECTION, check=False)
                raise FederationError(f"run {run_id} did not finish within {timeout:g} s (last status {status.status})")
            if on_poll is not None:
                on_poll()
            self.supervisor.track()
            time.sleep(interval)

    def run_log(self, run_id: int) -> str:
        out = subprocess.run([str(BIN / "flwr"), "log", str(run_id), CONNECTION, "--show"], env=self.env("cli"), cwd=self.work,
                             capture_output=True, text=True, timeout=120)
        return out.stdout + out.stderr

    def close(self) -> list[int]:
        return self.supervisor.close()
