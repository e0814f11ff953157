"""The coordinator's durable organ store: content-addressed organ files plus per-run round records.

Layout under the store root::

    objects/<aa>/<sha256>.safetensors      organ files, named by the SHA-256 of their bytes
    runs/<run_id>/state.json               completed rounds and the current organ(s)
    runs/<run_id>/rounds/<n>/accepted/<site>.json   one record per accepted organ
    runs/<run_id>/lock                     held by the one coordinator working on the run

Every file is written atomically (temp, fsync, rename) and an object is
written before any record names it, so a crash at any point leaves a store
whose records all point at complete organs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from organfed.shared.atomic import atomic_path, write_json_atomic
from organfed.shared.errors import ConfigError, OrganfedError
from organfed.shared.organ import Organ, load_organ

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = 1 << 20


class StoreError(OrganfedError):
    """The organ store is missing an object, is corrupt, or is held by another coordinator."""


@dataclass(frozen=True)
class Accepted:
    """An organ accepted from a site (``site``: its key id; ``name``: its enrolled name) in a round."""

    site: str
    name: str
    digest: str
    tokens: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RunState:
    """What a run has finished: rounds done and the organ(s) they produced."""

    run_id: str
    completed_rounds: int = 0
    current: str | None = None
    per_site: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)


def _check_name(kind: str, name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ConfigError(f"{kind} {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return name


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while piece := fh.read(_CHUNK):
            hasher.update(piece)
    return hasher.hexdigest()


class OrganStore:
    """A directory of organs by content, and of run records that name them."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "runs").mkdir(parents=True, exist_ok=True)

    # -- objects ----------------------------------------------------------------------------

    def object_path(self, digest: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise StoreError(f"malformed organ digest {digest!r}")
        return self.root / "objects" / digest[:2] / f"{digest}.safetensors"

    def put(self, organ_file: Path) -> str:
        """Copy an organ file into the store (once per content); return its digest."""
        digest = file_digest(organ_file)
        target = self.object_path(digest)
        if not target.exists() or file_digest(target) != digest:  # absent, or damaged: (re)write it
            with atomic_path(target) as tmp:
                shutil.copyfile(organ_file, tmp)
            if file_digest(target) != digest:
                target.unlink(missing_ok=True)
                raise StoreError(f"{organ_file} changed while it was being stored")
        return digest

    def load(self, digest: str) -> Organ:
        """Load and fully validate a stored organ; refuse it if its bytes no longer match its name."""
        path = self.object_path(digest)
        if not path.is_file():
            raise StoreError(f"organ {digest[:12]} is not in the store at {self.root}")
        if file_digest(path) != digest:
            raise StoreError(f"stored organ {digest[:12]} is corrupt (its bytes no longer match its digest)")
        return load_organ(path)

    # -- runs -------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / _check_name("run id", run_id)

    def lock(self, run_id: str) -> "RunLock":
        return RunLock(self.run_dir(run_id) / "lock", run_id)

    def state(self, run_id: str) -> RunState:
        path = self.run_dir(run_id) / "state.json"
        if not path.exists():
            return RunState(run_id)
        return RunState(**json.loads(path.read_text()))

    def save_state(self, state: RunState) -> None:
        write_json_atomic(self.run_dir(state.run_id) / "state.json", asdict(state))

    def record_accepted(self, run_id: str, round_number: int, accepted: Accepted) -> None:
        """Record an accepted organ (its object must already be stored)."""
        if not self.object_path(accepted.digest).is_file():
            raise StoreError(f"refusing to record organ {accepted.digest[:12]}: it is not stored")
        path = self.run_dir(run_id) / "rounds" / str(round_number) / "accepted" / f"{_check_name('site', accepted.site)}.json"
        write_json_atomic(path, asdict(accepted))

    def accepted(self, run_id: str, round_number: int) -> list[Accepted]:
        """The organs accepted so far in a round (after a restart, too), by site name."""
        folder = self.run_dir(run_id) / "rounds" / str(round_number) / "accepted"
        if not folder.is_dir():
            return []
        return [Accepted(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]


class RunLock:
    """An exclusive lock on one run, so two coordinators never write the same records."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path, self.run_id, self._fd = path, run_id, -1

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise StoreError(f"run {self.run_id!r} is held by another coordinator process") from None
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
