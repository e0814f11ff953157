"""A persistent replay cache: the (sender, nonce) pairs of accepted envelopes, kept until they expire.

The cache is a file of JSON lines, one per accepted envelope. A claim takes an
exclusive ``flock`` on ``<cache>.lock``, re-reads the file, refuses a pair it
already holds, appends one line and fsyncs before returning, so a restart (or
another coordinator process on the same host) sees every claim that returned.
A crash mid-append leaves an incomplete last line, which is ignored and cut on
the next claim; any other malformed line makes the cache unusable
(:class:`ReplayCacheError`): it fails closed. Entries are dropped once
``expires_at + skew`` has passed: by then the envelope's expiry refuses it anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from organfed.shared.atomic import fsync_dir, write_bytes_atomic
from organfed.shared.errors import ReplayCacheError, VerificationError

CLOCK_SKEW = 300
_ID_RE = re.compile(r"^[0-9a-f]{16,64}$")


@dataclass(frozen=True)
class _Entries:
    live: dict[tuple[str, str], int]
    expired: int
    torn: bool


@dataclass(frozen=True)
class ReplayCache:
    """The replay cache stored at ``path`` (created on first claim)."""

    path: Path
    skew: int = CLOCK_SKEW

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @contextlib.contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ReplayCacheError(f"cannot lock replay cache {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            os.close(fd)

    def _load(self, now: float) -> _Entries:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return _Entries({}, 0, False)
        except OSError as exc:
            raise ReplayCacheError(f"cannot read replay cache {self.path}: {exc.strerror or exc}") from None
        lines = data.split(b"\n")
        torn = lines.pop() != b""
        live: dict[tuple[str, str], int] = {}
        expired = 0
        for number, line in enumerate(lines, 1):
            try:
                doc = json.loads(line)
                sender, nonce, expires = doc["sender"], doc["nonce"], doc["expires_at"]
                if not (isinstance(sender, str) and isinstance(nonce, str) and type(expires) is int):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise ReplayCacheError(f"{self.path}: line {number} is malformed; the cache cannot be trusted") from None
            if expires + self.skew < now:
                expired += 1
            else:
                live[(sender, nonce)] = expires
        return _Entries(live, expired, torn)

    def seen(self, sender: str, nonce: str, *, now: float) -> bool:
        """Whether ``(sender, nonce)`` was claimed and has not yet expired."""
        with self._locked(fcntl.LOCK_SH):
            return (sender, nonce) in self._load(now).live

    def claim(self, sender: str, nonce: str, expires_at: int, *, now: float) -> None:
        """Record ``(sender, nonce)`` durably; ``VerificationError("replayed-nonce")`` if it is already there."""
        if not (_ID_RE.match(sender) and _ID_RE.match(nonce)) or type(expires_at) is not int:
            raise ReplayCacheError("replay cache entries need hex sender and nonce and an integer expiry")
        with self._locked(fcntl.LOCK_EX):
            entries = self._load(now)
            if (sender, nonce) in entries.live:
                raise VerificationError("replayed-nonce", f"nonce {nonce} from {sender} was already accepted")
            line = json.dumps({"sender": sender, "nonce": nonce, "expires_at": expires_at}, sort_keys=True) + "\n"
            if entries.torn or entries.expired > len(entries.live):
                kept = [json.dumps({"sender": s, "nonce": n, "expires_at": e}, sort_keys=True) + "\n"
                        for (s, n), e in entries.live.items()]
                write_bytes_atomic(self.path, "".join(kept + [line]).encode(), mode=0o600)
                return
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                fsync_dir(self.path.parent)
            except OSError as exc:
                raise ReplayCacheError(f"cannot append to replay cache {self.path}: {exc.strerror or exc}") from None
