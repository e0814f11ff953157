"""Start local processes and make sure every one of them, and all they spawn, ends.

Flower's SuperLink starts its executor in a new session, so killing a process
group is not enough. The supervisor remembers every descendant and session it
has seen, becomes the child subreaper (Linux) so orphans come back to it, and
on close sends SIGTERM, waits, then SIGKILLs whatever is left in those sessions.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    children: dict[int, list[int]] = {}
    for p in _pids():
        fields = _stat(p)
        if fields:
            children.setdefault(int(fields[1]), []).append(p)
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


class Supervisor:
    """Processes started in their own sessions, logged to files, and reliably ended by :meth:`close`.

    Call :meth:`track` now and then while the processes run: it records their descendants,
    so that daemons which later lose their parent (and are handed to this process as
    subreaper) are still known, and ended, on close. Nothing else is ever signalled.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self._pids: set[int] = set()
        self._sessions: set[int] = set()
        try:
            self._subreaper = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            self._subreaper = False  # not Linux: orphans go to init, the session sweep still finds them

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.log_path(name), "ab")
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd or self.log_dir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        self._pids.add(proc.pid)
        self._sessions.add(proc.pid)
        return proc

    def track(self) -> None:
        """Remember every live descendant of the started processes, and their sessions."""
        for proc in self.procs.values():
            if proc.poll() is None:
                self._pids.update(descendants(proc.pid))
        known = set(self._pids)
        for pid in known:  # descendants of remembered orphans (they now hang below this process)
            if _alive(pid):
                self._pids.update(descendants(pid))
        own_session = os.getsid(0)
        for pid in list(self._pids):
            fields = _stat(pid)
            if fields and int(fields[3]) != own_session:
                self._sessions.add(int(fields[3]))
        self._pids.update(p for p in _pids() if (f := _stat(p)) and int(f[3]) in self._sessions)

    def kill(self, name: str) -> None:
        """SIGKILL one process and its descendants now (a crash, for tests)."""
        proc = self.procs[name]
        self.track()
        for pid in [proc.pid, *descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self, grace: float = 8.0) -> list[int]:
        """End everything started; return the pids that could not be ended (normally none)."""
        self.track()
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for _ in range(4):
            self.track()
            stray = [p for p in self._pids if _alive(p) and p != os.getpid()]
            if not stray:
                break
            for pid in stray:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.3)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for pid in self._pids:  # reap the orphans handed to us as subreaper
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if self._subreaper:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
            self._subreaper = False
        return [p for p in self._pids if _alive(p) and p != os.getpid()]
