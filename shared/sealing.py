"""Seal an organ for the coordinator, and open one there: the API the Flower apps call.

:func:`seal_organ` signs and encrypts an organ file to a recipient identity.
:func:`open_envelope` refuses anything it cannot fully verify. In order: the
header and size, the recipient, the sender (enrolled, not revoked, as expected),
run, round, expiry, replay, the size policy; then it decrypts to a temporary
file beside ``out``, verifies every chunk, the signature, the statement and the
digest, then takes the verdict of the organ content checks and the policy (run
on the plaintext as it was decrypted), claims the nonce, writes the audit line
and only then renames the organ into place. A refusal raises
:class:`VerificationError` (audited) and leaves no file behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from organfed.shared.audit_log import AuditLog
from organfed.shared.content_check import OrganCheck, OrganStreamCheck
from organfed.shared.envelope import DEFAULT_CHUNK_SIZE, Statement, open_file, seal_file
from organfed.shared.envelope_header import Binding, Header, read_header
from organfed.shared.errors import ConfigError, EnvelopeError, OrganFormatError, VerificationError
from organfed.shared.identity import Identity, KeyDir, TrustStore
from organfed.shared.manifest import Manifest
from organfed.shared.organ import read_manifest
from organfed.shared.policy import OrganPolicy
from organfed.shared.replay import CLOCK_SKEW, ReplayCache

Inspect = Callable[[Path, Manifest], None]
DEFAULT_TTL = 3600
MAX_TTL = 7 * 24 * 3600
EnvelopeSource = Path | str | bytes | bytearray | memoryview


def seal_organ(organ: Path | str, *, sender: KeyDir, recipient: Identity, run_id: str, round: int,
               ttl: int = DEFAULT_TTL, out: Path | str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
               now: float | None = None, nonce: str | None = None) -> Path | bytes:
    """Sign then encrypt ``organ`` to ``recipient`` for ``run_id``/``round``; write ``out`` or return the bytes.

    ``nonce`` answers the recipient's challenge (32 hex digits, as the coordinator sends each round); without
    it a fresh random nonce is used.
    """
    manifest = json.loads(read_manifest(organ).to_json())
    binding = Binding.new(run_id, round, ttl=ttl, now=time.time() if now is None else now, nonce=nonce)
    return seal_file(Path(organ), Path(out) if out is not None else None, sender=sender, recipient=recipient,
                     binding=binding, manifest=manifest, chunk_size=chunk_size)


@dataclass(frozen=True)
class OpenedOrgan:
    """An opened, fully verified organ, now at ``path``."""

    path: Path
    manifest: Manifest
    sender: Identity
    run_id: str
    round: int
    nonce: str
    digest: str
    norm: float


@contextlib.contextmanager
def _source(envelope: EnvelopeSource) -> Iterator[BinaryIO]:
    if isinstance(envelope, (bytes, bytearray, memoryview)):
        yield io.BytesIO(envelope)
        return
    try:
        fh = open(envelope, "rb")
    except OSError as exc:
        raise EnvelopeError(f"cannot read envelope {envelope}: {exc.strerror or exc}") from None
    with fh:
        yield fh


def _check_binding(header: Header, *, key: KeyDir, trust: TrustStore, run_id: str, round: int,
                   expected_sender: str | None, expected_nonce: str | None, now: float, max_ttl: int) -> Identity:
    if header.recipient != key.identity.key_id:
        raise VerificationError("wrong-recipient", f"sealed to {header.recipient}, this is {key.identity.key_id}")
    if expected_sender is not None and header.sender != expected_sender:
        raise VerificationError("wrong-sender", f"from {header.sender}, expected {expected_sender}")
    sender = trust.lookup(header.sender)
    b = header.binding
    if b.run_id != run_id:
        raise VerificationError("wrong-run", f"sealed for run {b.run_id!r}, expected {run_id!r}")
    if b.round != round:
        raise VerificationError("wrong-round", f"sealed for round {b.round}, expected {round}")
    if expected_nonce is not None and b.nonce != expected_nonce:
        raise VerificationError("wrong-nonce", f"answers challenge {b.nonce}, not the one issued ({expected_nonce})")
    if now >= b.expires_at:
        raise VerificationError("expired", f"expired {int(now - b.expires_at)} s ago")
    if b.expires_at - now > max_ttl or b.created_at > now + CLOCK_SKEW:
        raise VerificationError("bad-expiry", f"validity window {b.created_at}..{b.expires_at} is in the future or too long")
    return sender


def open_envelope(envelope: EnvelopeSource, *, key: KeyDir, trust: TrustStore, run_id: str, round: int,
                  replay: ReplayCache, out: Path | str, policy: OrganPolicy | None = None,
                  audit: AuditLog | None = None, expected_sender: str | None = None, expected_nonce: str | None = None,
                  max_ttl: int = MAX_TTL, now: float | None = None, inspect: Inspect | None = None) -> OpenedOrgan:
    """Verify and decrypt ``envelope`` (a path or the bytes) into the organ file ``out``; fail closed.

    ``expected_nonce``, if given, is the challenge this caller issued: an envelope bound to any other is refused.

    ``inspect(path, manifest)``, if given, runs after every built-in check and before the
    organ is accepted: the caller's own checks (raise :class:`VerificationError` to refuse).
    """
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists; the opened organ needs a new name")
    now = time.time() if now is None else now
    trail: dict = {"sender": None, "run": None, "round": None, "digest": None}  # claims until verified
    try:
        with _source(envelope) as src:
            return _open(src, trail, key=key, trust=trust, run_id=run_id, round=round, replay=replay, out=out,
                         policy=policy, audit=audit, expected_sender=expected_sender, expected_nonce=expected_nonce,
                         max_ttl=max_ttl, now=now, inspect=inspect)
    except VerificationError as exc:
        if audit is not None:
            audit.append(decision="refuse", reason=exc.reason, detail=exc.detail, now=now, **trail)
        raise


def _open(src: BinaryIO, trail: dict, *, key: KeyDir, trust: TrustStore, run_id: str, round: int,
          replay: ReplayCache, out: Path, policy: OrganPolicy | None, audit: AuditLog | None,
          expected_sender: str | None, expected_nonce: str | None, max_ttl: int, now: float,
          inspect: Inspect | None) -> OpenedOrgan:
    header = read_header(src)
    b = header.binding
    trail.update(sender=header.sender, run=b.run_id, round=b.round)
    sender = _check_binding(header, key=key, trust=trust, run_id=run_id, round=round,
                            expected_sender=expected_sender, expected_nonce=expected_nonce, now=now, max_ttl=max_ttl)
    if replay.seen(sender.key_id, b.nonce, now=now):
        raise VerificationError("replayed-nonce", f"nonce {b.nonce} from {sender.key_id} was already accepted")
    if policy is not None:
        policy.check_size(header.payload_bytes)

    content = OrganStreamCheck(header.payload_bytes, policy)  # fed each chunk once it is authenticated

    def check(tmp: Path, statement: Statement) -> OrganCheck:
        trail["digest"] = statement.organ_digest
        try:
            result = content.result()  # only now: a bad signature or digest is reported before the content
        except OrganFormatError as exc:
            raise VerificationError("organ-content", str(exc)) from None
        if json.loads(result.manifest.to_json()) != statement.manifest:
            raise VerificationError("binding-mismatch", "the organ's manifest differs from the signed one")
        if inspect is not None:
            inspect(tmp, result.manifest)
        replay.claim(sender.key_id, b.nonce, b.expires_at, now=now)
        if audit is not None:
            audit.append(decision="accept", reason="ok", now=now, **trail)
        return result

    statement, result = open_file(src, out, header, key=key, sender=sender, check=check, tap=content.update)
    return OpenedOrgan(out, result.manifest, sender, b.run_id, b.round, b.nonce, statement.organ_digest, result.norm)
