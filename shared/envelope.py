"""The envelope format (version 1): sign, then encrypt, streaming; see ``docs/envelope-format.md``.

Layout::

    preamble   b"OFEDENV\\n" | u16 version | u32 header length        (big-endian)
    header     canonical JSON: suite, sender, recipient, run, round, nonce,
               created_at, expires_at, chunk_size, payload_bytes, trailer_bytes
    key block  HPKE(X25519) encapsulation of a fresh file key, info bound to the header
    payload    the organ in chunks, AES-256-GCM STREAM, AAD = header hash
    trailer    statement JSON || Ed25519 signature, AES-256-GCM under its own key

The header (``envelope_header.py``) fixes the exact envelope size, so truncation
and extension are found before any decryption. The signed statement repeats
every header field, the header hash, the organ's byte count, SHA-256 digest and
manifest. This module knows nothing of organs and imports no torch: it moves
bytes. Callers see the plaintext as it is decrypted through the ``tap`` of
:func:`open_file` and give their verdict in its ``check`` hook, which runs after
the signature and digest have passed and before the output is renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from organfed.shared.atomic import atomic_path
from organfed.shared.crypto import (
    SIGNATURE_BYTES, TAG_BYTES, ChunkCipher, derive_stream_keys, sign, unwrap_file_key, verify_signature, wrap_file_key,
)
from organfed.shared.direct_io import DirectFile
from organfed.shared.envelope_header import Binding, Header, canonical_json
from organfed.shared.errors import EnvelopeError, VerificationError
from organfed.shared.identity import Identity, KeyDir
from organfed.shared.pump import pump

DEFAULT_CHUNK_SIZE = 1 << 20
_STATEMENT_LABEL = b"organfed-statement/1\x00"
T = TypeVar("T")


def statement_bytes(header: Header, organ_digest: str, manifest: dict) -> bytes:
    """The canonical statement a sender signs for ``header`` (fixed length for a given header and manifest)."""
    b = header.binding
    return canonical_json({
        "format": "organfed-statement", "version": 1, "sender": header.sender, "recipient": header.recipient,
        "run": b.run_id, "round": b.round, "nonce": b.nonce, "created_at": b.created_at, "expires_at": b.expires_at,
        "header_sha256": header.digest.hex(), "organ_bytes": header.payload_bytes, "organ_digest": organ_digest,
        "manifest": manifest,
    })


@dataclass(frozen=True)
class Statement:
    """The verified, signed statement of an opened envelope."""

    sender: str
    recipient: str
    binding: Binding
    organ_bytes: int
    organ_digest: str
    manifest: dict


def _read_exact(src: BinaryIO, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])
        if not n:
            raise VerificationError("truncated", "the envelope ends early")
        got += n


def seal_stream(src: BinaryIO, dst: BinaryIO, *, sender: KeyDir, recipient: Identity, binding: Binding,
                payload_bytes: int, manifest: dict, chunk_size: int = DEFAULT_CHUNK_SIZE) -> str:
    """Write an envelope of the ``payload_bytes`` bytes read from ``src`` to ``dst``; return their digest."""
    draft = Header.draft(sender.identity.key_id, recipient.key_id, binding, chunk_size, payload_bytes)
    try:
        trailer = len(statement_bytes(draft, "sha256:" + "0" * 64, manifest)) + SIGNATURE_BYTES
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"the manifest cannot be signed as canonical JSON ({exc})") from None
    header = draft.with_trailer(trailer)
    file_key, key_block = wrap_file_key(recipient.keys, header.key_context)
    header = dataclasses.replace(header, key_block=key_block)
    payload_key, statement_key = derive_stream_keys(file_key, header.digest)
    dst.write(header.prefix + key_block)
    cipher, hasher, last = ChunkCipher(payload_key, header.digest), organ_hasher(), header.num_chunks - 1

    def work(index: int, chunk: memoryview, out: bytearray) -> memoryview:
        hasher.update(chunk)
        return cipher.seal_into(index, index == last, chunk, out)

    try:
        pump(src, dst, count=header.num_chunks, size=header.chunk_plain_bytes, capacity=chunk_size + TAG_BYTES,
             read=_read_exact, work=work)
    except VerificationError:
        raise EnvelopeError("the organ ended early (changed while sealing?)") from None
    if src.read(1):
        raise EnvelopeError("the organ grew while sealing")
    digest = "sha256:" + hasher.hexdigest()
    statement = statement_bytes(header, digest, manifest)
    if len(statement) + SIGNATURE_BYTES != trailer:
        raise EnvelopeError("internal error: the statement length changed while sealing")
    signature = sign(sender.keys, _STATEMENT_LABEL + statement)
    out = bytearray(trailer + TAG_BYTES)
    dst.write(ChunkCipher(statement_key, header.digest).seal_into(0, True, statement + signature, out))
    return digest


def organ_hasher() -> "hashlib._Hash":
    """The hash of the organ's bytes bound in the statement (SHA-256)."""
    return hashlib.sha256()


def open_stream(src: BinaryIO, dst: BinaryIO, header: Header, *, key: KeyDir, sender: Identity,
                tap: Callable[[memoryview], None] | None = None) -> Statement:
    """Decrypt the payload after ``header`` into ``dst`` and verify the trailer; return the signed statement.

    ``dst`` (and ``tap``, if given, on a thread of its own) receives the plaintext of each chunk once that chunk
    is authenticated, but before the signature is checked: the caller must discard it unless this returns.
    """
    if header.recipient != key.identity.key_id or header.sender != sender.key_id:
        raise VerificationError("wrong-recipient" if header.recipient != key.identity.key_id else "wrong-sender")
    file_key = unwrap_file_key(key.keys, header.key_block, header.key_context)
    payload_key, statement_key = derive_stream_keys(file_key, header.digest)
    cipher, hasher, last = ChunkCipher(payload_key, header.digest), organ_hasher(), header.num_chunks - 1

    def work(index: int, chunk: memoryview, out: bytearray) -> memoryview:
        plain = cipher.open_into(index, index == last, chunk, out)
        hasher.update(plain)
        return plain

    pump(src, dst, count=header.num_chunks, size=lambda i: header.chunk_plain_bytes(i) + TAG_BYTES,
         capacity=header.chunk_size, read=_read_exact, work=work, tap=tap)
    trailer_ct = bytearray(header.trailer_bytes + TAG_BYTES)
    _read_exact(src, memoryview(trailer_ct))
    trailer = bytes(ChunkCipher(statement_key, header.digest).open_into(0, True, trailer_ct, bytearray(header.trailer_bytes)))
    statement, signature = trailer[:-SIGNATURE_BYTES], trailer[-SIGNATURE_BYTES:]
    verify_signature(sender.keys, _STATEMENT_LABEL + statement, signature)
    return _check_statement(header, statement, "sha256:" + hasher.hexdigest())


def _check_statement(header: Header, raw: bytes, digest: str) -> Statement:
    try:
        doc = json.loads(raw)
        manifest = doc["manifest"]
        claimed = doc["organ_digest"]
        expected = statement_bytes(header, claimed, manifest)
    except (ValueError, KeyError, TypeError, RecursionError):
        raise VerificationError("binding-mismatch", "the signed statement is malformed") from None
    if raw != expected or not isinstance(manifest, dict):
        raise VerificationError("binding-mismatch", "the signed statement does not match the envelope header")
    if claimed != digest:
        raise VerificationError("digest-mismatch", f"decrypted organ has digest {digest}, the statement signs {str(claimed)[:80]}")
    return Statement(header.sender, header.recipient, header.binding, header.payload_bytes, digest, manifest)


def seal_file(src: Path, out: Path | None, *, sender: KeyDir, recipient: Identity, binding: Binding, manifest: dict,
              chunk_size: int = DEFAULT_CHUNK_SIZE) -> Path | bytes:
    """Seal the file ``src`` into the file ``out`` (atomically), or return the envelope's bytes if ``out`` is None."""
    try:
        with open(src, "rb") as fh:
            kwargs = dict(sender=sender, recipient=recipient, binding=binding, payload_bytes=os.fstat(fh.fileno()).st_size,
                          manifest=manifest, chunk_size=chunk_size)
            if out is None:
                buffer = io.BytesIO()
                seal_stream(fh, buffer, **kwargs)
                return buffer.getvalue()
            with atomic_path(out) as tmp, DirectFile(tmp) as dst:  # around the page cache: nobody here reads it back
                seal_stream(fh, dst, **kwargs)
    except OSError as exc:
        raise EnvelopeError(f"cannot seal {src} to {out or 'memory'}: {exc.strerror or exc}") from None
    return Path(out)


def open_file(src: BinaryIO, out: Path, header: Header, *, key: KeyDir, sender: Identity,
              check: Callable[[Path, Statement], T], tap: Callable[[memoryview], None] | None = None) -> tuple[Statement, T]:
    """Decrypt and verify into a temporary file beside ``out``, run ``check(tmp, statement)``, then rename.

    ``tap`` sees the plaintext as it is decrypted (see :func:`open_stream`). Any exception (a refusal
    included) removes the temporary file: ``out`` appears only if everything passed.
    """
    try:
        with atomic_path(out, mode=0o600) as tmp:
            with DirectFile(tmp) as dst:  # around the page cache: the content checks run on the stream (``tap``)
                statement = open_stream(src, dst, header, key=key, sender=sender, tap=tap)
            checked = check(tmp, statement)
    except OSError as exc:
        raise EnvelopeError(f"cannot write {out}: {exc.strerror or exc}") from None
    return statement, checked
