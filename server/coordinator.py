"""The coordinator's standing parts for one run: keys, trust, store, audit log, replay cache, policy.

:func:`open_coordinator` checks them once at start-up, so a round never
discovers a missing key or base model half-way.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from organfed.server.config import ServerConfig
from organfed.server.store import OrganStore
from organfed.shared.atomic import write_bytes_atomic
from organfed.shared.audit_log import AuditLog
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.identity import KeyDir, TrustStore, load_key_dir, read_passphrase
from organfed.shared.model_dir import ModelDir, open_model_dir
from organfed.shared.organ import Organ, extract_organ, load_organ
from organfed.shared.policy import OrganPolicy
from organfed.shared.replay import ReplayCache


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


def open_coordinator(config: ServerConfig) -> Coordinator:
    """Load and check everything the run needs before the first message is sent."""
    passphrase = read_passphrase(file=Path(config.passphrase_file)) if config.passphrase_file else None
    key = load_key_dir(config.key_dir, passphrase=passphrase)
    base = open_model_dir(config.base_model)
    with tempfile.TemporaryDirectory(prefix="organfed-start-") as tmp:
        extract_organ(base.path, Path(tmp) / "start.safetensors", config.layer_range)
        start = load_organ(Path(tmp) / "start.safetensors")
    norm = sum(float(t.float().pow(2).sum()) for t in start.tensors.values()) ** 0.5
    policy = OrganPolicy.like(start.manifest, max_norm=norm * config.max_norm_ratio if config.max_norm_ratio else None)
    work = config.work_dir
    work.mkdir(parents=True, exist_ok=True)
    coordinator = Coordinator(
        config=config, key=key, trust=TrustStore(config.trust_dir), store=OrganStore(work / "store"),
        audit=AuditLog(work / "audit.log"), replay=ReplayCache(work / "replay.json"), base=base,
        base_fingerprint=fingerprint_model_dir(base.path), start=start, policy=policy,
    )
    write_bytes_atomic(coordinator.run_dir / "config.json", json.dumps(config.to_run_config(), indent=2).encode())
    return coordinator
