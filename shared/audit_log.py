"""The coordinator's audit log: one hash-chained JSON line per accepted or refused envelope.

Line ``n`` (from 1) is canonical JSON with ``seq = n`` and ``prev`` = the
SHA-256 of line ``n-1``'s bytes (:data:`GENESIS` for the first). A head file
``<log>.head`` holds the line count and the hash of the last line; it is
replaced atomically after each fsynced append. :func:`verify_log` therefore
finds an edited, reordered, inserted or deleted line anywhere, including the
last one. It cannot find a consistent rewrite of both files by someone with
write access to both: publish ``N:head`` elsewhere (``verify`` prints it) and
pass it back as an anchor to pin the first N lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from organfed.shared.atomic import write_json_atomic
from organfed.shared.errors import AuditLogError

GENESIS = "sha256:" + "0" * 64
MAX_LINE_BYTES = 16 * 1024
_FIELDS = {"seq", "prev", "time", "sender", "run", "round", "digest", "decision", "reason", "detail"}


def _hash(line: bytes) -> str:
    return "sha256:" + hashlib.sha256(line).hexdigest()


def _head_path(log: Path) -> Path:
    return log.with_name(log.name + ".head")


@dataclass(frozen=True)
class AuditReport:
    """A verified log: how many lines, and the hash of the last (the value to publish)."""

    lines: int
    head: str


def _read_head(log: Path) -> tuple[int, str] | None:
    try:
        doc = json.loads(_head_path(log).read_bytes())
        lines, head = doc["lines"], doc["head"]
        if type(lines) is not int or not isinstance(head, str):
            raise TypeError
        return lines, head
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        raise AuditLogError(f"{_head_path(log)} is unreadable or malformed") from None


def _check_line(raw: bytes, seq: int, prev: str) -> None:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise AuditLogError(f"line {seq}: not valid JSON (edited?)") from None
    if not isinstance(doc, dict) or set(doc) != _FIELDS or json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() != raw:
        raise AuditLogError(f"line {seq}: not a canonical audit record (edited?)")
    if doc["seq"] != seq:
        raise AuditLogError(f"line {seq}: carries sequence number {doc['seq']!r} (lines reordered, inserted or deleted)")
    if doc["prev"] != prev:
        raise AuditLogError(f"line {seq}: does not chain to line {seq - 1} (that line was edited, reordered or deleted)")
    if doc["decision"] not in ("accept", "refuse"):
        raise AuditLogError(f"line {seq}: unknown decision {doc['decision']!r}")


@dataclass(frozen=True)
class _Scan:
    count: int
    last: str
    before_last: str
    good_bytes: int
    torn: bool
    anchor: str | None = None


def _scan(log: Path, anchor_line: int = 0) -> _Scan:
    """Check every complete line; say where the chain ends, whether an incomplete line follows,
    and the hash of line ``anchor_line``."""
    count, last, before, good, anchor = 0, GENESIS, GENESIS, 0, None
    try:
        with open(log, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    return _Scan(count, last, before, good, True, anchor)
                count += 1
                _check_line(raw[:-1], count, last)
                before, last, good = last, _hash(raw[:-1]), good + len(raw)
                anchor = last if count == anchor_line else anchor
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise AuditLogError(f"cannot read {log}: {exc.strerror or exc}") from None
    return _Scan(count, last, before, good, False, anchor)


def parse_anchor(text: str) -> tuple[int, str]:
    """Parse ``N:sha256:<hex>``, the form :func:`verify_log` reports (lines and head) and accepts as an anchor."""
    count, sep, digest = text.partition(":")
    if not sep or not count.isdigit() or int(count) < 1 or not digest.startswith("sha256:") or len(digest) != 71:
        raise AuditLogError(f"anchor {text!r} must look like N:sha256:<64 hex digits>")
    return int(count), digest


def verify_log(path: Path | str, *, anchor: tuple[int, str] | None = None) -> AuditReport:
    """Check the chain and the head of the log at ``path``; :class:`AuditLogError` names the first problem.

    ``anchor`` = (line number, hash) published earlier: line ``N`` must still hash to it.
    """
    log = Path(path)
    if not log.exists():
        raise AuditLogError(f"{log} does not exist")
    scan = _scan(log, anchor[0] if anchor else 0)
    if scan.torn:
        raise AuditLogError(f"line {scan.count + 1}: incomplete (a crash during an append, or the file was cut)")
    head = _read_head(log)
    if head is None:
        raise AuditLogError(f"{_head_path(log)} is missing: the end of the log cannot be checked")
    if head[0] > scan.count:
        raise AuditLogError(f"the log has {scan.count} lines but its head records {head[0]} (lines deleted from the end?)")
    if head[0] < scan.count:
        raise AuditLogError(f"{scan.count - head[0]} line(s) after line {head[0]} are not covered by the head "
                            "(appended by hand, or a crash between an append and its head update)")
    if head[1] != scan.last:
        raise AuditLogError(f"line {scan.count}: is not the line the head records (edited?)")
    if anchor is not None and scan.anchor != anchor[1]:
        raise AuditLogError(f"line {anchor[0]}: does not match the anchor {anchor[1]} (history rewritten?)")
    return AuditReport(scan.count, scan.last)


@dataclass(frozen=True)
class AuditLog:
    """An append-only, hash-chained audit log at ``path`` (with ``<path>.head`` and ``<path>.lock``)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _tail(self) -> tuple[int, str]:
        """(count, last hash) after checking the log against its head.

        Recovers from a crash between the two writes of an append: an incomplete
        last line is cut, and a head one line behind a well-chained log is accepted.
        """
        try:
            scan = _scan(self.path)
        except AuditLogError as exc:
            raise AuditLogError(f"refusing to append to {self.path}: {exc}; run `organfed audit-log verify`") from None
        head = _read_head(self.path)
        if head is None and scan.count:
            raise AuditLogError(f"{_head_path(self.path)} is missing; refusing to append to {self.path}")
        if head is not None and head != (scan.count, scan.last) and head != (scan.count - 1, scan.before_last):
            raise AuditLogError(f"{self.path} does not match its head; run `organfed audit-log verify` before appending")
        if scan.torn:
            with open(self.path, "rb+") as fh:
                fh.truncate(scan.good_bytes)
                os.fsync(fh.fileno())
        return scan.count, scan.last

    def append(self, *, decision: Literal["accept", "refuse"], reason: str, sender: str | None, run: str | None,
               round: int | None, digest: str | None, detail: str = "", now: float | None = None) -> str:
        """Append one record (fsynced, then the head); return the new line's hash."""
        with self._locked():
            count, prev = self._tail()
            when = datetime.fromtimestamp(now, timezone.utc) if now is not None else datetime.now(timezone.utc)
            record = {"seq": count + 1, "prev": prev, "time": when.isoformat(timespec="milliseconds"),
                      "sender": sender, "run": run, "round": round, "digest": digest,
                      "decision": decision, "reason": reason, "detail": detail[:500]}
            raw = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
            if len(raw) >= MAX_LINE_BYTES:
                raise AuditLogError("audit record too large")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, raw + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            write_json_atomic(_head_path(self.path), {"lines": count + 1, "head": _hash(raw)})
            return _hash(raw)
