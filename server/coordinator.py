"""The coordinator's standing parts for one run: keys, trust, store, audit log, replay cache, policy.

:func:`open_coordinator` checks them once at start-up, so a round never
discovers a missing key or base model half-way; :func:`start_run` refuses to
resume a run whose organ spec changed since it began.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from organfed.server.config import ServerConfig
from organfed.server.store import OrganStore, RunState
from organfed.shared.atomic import write_bytes_atomic
from organfed.shared.audit_log import AuditLog
from organfed.shared.errors import ConfigError
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.identity import KeyDir, TrustStore, load_key_dir, read_passphrase
from organfed.shared.model_dir import ModelDir, open_model_dir
from organfed.shared.organ import Organ, extract_organ, load_organ
from organfed.shared.policy import OrganPolicy
from organfed.shared.replay import ReplayCache

SCRATCH_PREFIXES = ("open-", "organ-")
"""Temporary directories of the round loop in the work directory (swept at start-up)."""


@dataclass(frozen=True)
class Coordinator:
    config: ServerConfig
    key: KeyDir
    trust: TrustStore
    store: OrganStore
    audit: AuditLog
    replay: ReplayCache
    base: ModelDir
    base_fingerprint: str
    start: Organ
    policy: OrganPolicy

    @property
    def run_dir(self) -> Path:
        return self.config.work_dir / "runs" / self.config.run_id

    def event(self, kind: str, **fields: object) -> None:
        """Append a progress event (JSON lines) that launchers and people can follow."""
        path = self.run_dir / "events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": round(time.time(), 3), "event": kind, **fields}, sort_keys=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        print(f"[organfed] {kind}: {json.dumps(fields, sort_keys=True)}", flush=True)

    def load(self, digest: str) -> Organ:
        """A stored organ, checked again against this run's policy (the store is trusted, not blindly)."""
        organ = self.store.load(digest)
        self.policy.check_manifest(organ.manifest)
        return organ

    def spec(self) -> dict[str, Any]:
        """What every organ of the run must share; a resumed run must have the same."""
        m = self.start.manifest
        return {"base_fingerprint": self.base_fingerprint, "family": m.family, "layers": list(m.source_layers),
                "method": self.config.method.value, "mode": self.config.mode.value}


def open_coordinator(config: ServerConfig, store: OrganStore) -> Coordinator:
    """Load and check everything the run needs before the first message is sent (call under the run lock)."""
    passphrase = read_passphrase(file=Path(config.passphrase_file)) if config.passphrase_file else None
    key = load_key_dir(config.key_dir, passphrase=passphrase)
    base = open_model_dir(config.base_model)
    with tempfile.TemporaryDirectory(prefix="organfed-start-") as tmp:
        extract_organ(base.path, Path(tmp) / "start.safetensors", config.layer_range)
        start = load_organ(Path(tmp) / "start.safetensors")
    norm = sum(float(t.float().pow(2).sum()) for t in start.tensors.values()) ** 0.5
    policy = OrganPolicy.like(start.manifest, max_norm=norm * config.max_norm_ratio if config.max_norm_ratio else None)
    work = config.work_dir
    return Coordinator(
        config=config, key=key, trust=TrustStore(config.trust_dir), store=store, audit=AuditLog(work / "audit.log"),
        replay=ReplayCache(work / "replay.json"), base=base, base_fingerprint=fingerprint_model_dir(base.path),
        start=start, policy=policy,
    )


def start_run(co: Coordinator) -> RunState:
    """Sweep scratch left by a crash, then the run's state: new, or resumable with the same spec."""
    for prefix in SCRATCH_PREFIXES:
        for stale in co.config.work_dir.glob(f"{prefix}*"):
            shutil.rmtree(stale, ignore_errors=True)
    state = co.store.state(co.config.run_id)
    spec = co.spec()
    if state.spec and state.spec != spec:
        changed = sorted(k for k in spec if state.spec.get(k) != spec[k])
        raise ConfigError(f"run {co.config.run_id!r} began with another {', '.join(changed)}; start a new run id to change it")
    state.spec = spec
    write_bytes_atomic(co.run_dir / "config.json", json.dumps(co.config.to_run_config(), indent=2).encode())
    return state
