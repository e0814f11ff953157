"""The envelope format (version 1): sign, then encrypt, streaming; see ``docs/envelope-format.md``.

Layout::

    preamble   b"OFEDENV\\n" | u16 version | u32 header length        (big-endian)
    header     canonical JSON: suite, sender, recipient, run, round, nonce,
               created_at, expires_at, chunk_size, payload_bytes, trailer_bytes
    key block  HPKE(X25519) encapsulation of a fresh file key, info bound to the header
    payload    the organ in chunks, AES-256-GCM STREAM, AAD = header hash
    trailer    statement JSON || Ed25519 signature, AES-256-GCM under its own key

The header fixes the exact envelope size, so truncation and extension are found
before any decryption. The signed statement repeats every header field, the
header hash, the organ's byte count, SHA-256 digest and manifest. This module
knows nothing of organs and imports no torch: it moves bytes. Callers check
the payload's content through the ``check`` hook of :func:`open_file`, which
runs before the output is renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from organfed.shared.atomic import atomic_path
from organfed.shared.crypto import (
    KEY_BLOCK_BYTES, SIGNATURE_BYTES, SUITE, TAG_BYTES, ChunkCipher, derive_stream_keys, sign, unwrap_file_key,
    verify_signature, wrap_file_key,
)
from organfed.shared.direct_io import DirectFile
from organfed.shared.errors import EnvelopeError, VerificationError
from organfed.shared.identity import KEY_ID_RE, Identity, KeyDir
from organfed.shared.pump import pump

MAGIC = b"OFEDENV\n"
VERSION = 1
_PREAMBLE = struct.Struct(">8sHI")
MAX_HEADER_BYTES = 64 * 1024
MAX_TRAILER_BYTES = 2 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 50
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
_HEADER_KEYS = {"format", "suite", "sender", "recipient", "run", "round", "nonce", "created_at", "expires_at",
                "chunk_size", "payload_bytes", "trailer_bytes"}
_STATEMENT_LABEL = b"organfed-statement/1\x00"
T = TypeVar("T")


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _int_in(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


@dataclass(frozen=True)
class Binding:
    """What an envelope is for: run, round, a fresh nonce, and its validity window (Unix seconds)."""

    run_id: str
    round: int
    nonce: str
    created_at: int
    expires_at: int

    def problem(self) -> str | None:
        """What is wrong with these values, or None."""
        if not isinstance(self.run_id, str) or not RUN_ID_RE.match(self.run_id):
            return "run id must be 1-128 characters of letters, digits, '.', '_', ':', '-'"
        if not _int_in(self.round, 0, 2**31 - 1):
            return "round must be an integer in [0, 2^31)"
        if not isinstance(self.nonce, str) or not NONCE_RE.match(self.nonce):
            return "nonce must be 32 lowercase hex digits"
        if not _int_in(self.created_at, 0, 2**40) or not _int_in(self.expires_at, 0, 2**40):
            return "times must be integer Unix seconds"
        if self.expires_at <= self.created_at:
            return "expiry must come after creation"
        return None

    @classmethod
    def new(cls, run_id: str, round: int, *, ttl: int, now: float, nonce: str | None = None) -> Binding:
        """A binding valid for ``ttl`` seconds from ``now``; ``nonce`` is the recipient's challenge, or fresh random."""
        if type(ttl) is not int or ttl < 1:
            raise EnvelopeError(f"ttl must be a whole number of seconds >= 1, got {ttl!r}")
        binding = cls(run_id, round, os.urandom(16).hex() if nonce is None else nonce, int(now), int(now) + ttl)
        if (problem := binding.problem()) is not None:
            raise EnvelopeError(problem)
        return binding


@dataclass(frozen=True)
class Header:
    """A parsed envelope header (unauthenticated until the payload and signature check out)."""

    sender: str
    recipient: str
    binding: Binding
    chunk_size: int
    payload_bytes: int
    trailer_bytes: int
    prefix: bytes
    key_block: bytes

    @property
    def key_context(self) -> bytes:
        return b"organfed-envelope/1 key\x00" + hashlib.sha256(self.prefix).digest()

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.prefix + self.key_block).digest()

    @property
    def num_chunks(self) -> int:
        return -(-self.payload_bytes // self.chunk_size)

    def chunk_plain_bytes(self, index: int) -> int:
        return min(self.chunk_size, self.payload_bytes - index * self.chunk_size)

    @property
    def envelope_bytes(self) -> int:
        return (len(self.prefix) + KEY_BLOCK_BYTES + self.payload_bytes + TAG_BYTES * self.num_chunks
                + self.trailer_bytes + TAG_BYTES)


def _header_json(sender: str, recipient: str, b: Binding, chunk_size: int, payload: int, trailer: int) -> dict:
    return {"format": "organfed-envelope", "suite": SUITE, "sender": sender, "recipient": recipient, "run": b.run_id,
            "round": b.round, "nonce": b.nonce, "created_at": b.created_at, "expires_at": b.expires_at,
            "chunk_size": chunk_size, "payload_bytes": payload, "trailer_bytes": trailer}


def statement_bytes(header: Header, organ_digest: str, manifest: dict) -> bytes:
    """The canonical statement a sender signs for ``header`` (fixed length for a given header and manifest)."""
    b = header.binding
    return _canonical({
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
    if not _int_in(chunk_size, 1 << 12, 1 << 24) or chunk_size & (chunk_size - 1):
        raise EnvelopeError("chunk size must be a power of two from 4 KiB to 16 MiB")
    if not _int_in(payload_bytes, 1, MAX_PAYLOAD_BYTES):
        raise EnvelopeError(f"payload of {payload_bytes} bytes is empty or too large")
    if (problem := binding.problem()) is not None:
        raise EnvelopeError(problem)
    sender_id, recipient_id = sender.identity.key_id, recipient.key_id
    draft = Header(sender_id, recipient_id, binding, chunk_size, payload_bytes, 0, b"", b"")
    try:
        trailer = len(statement_bytes(draft, "sha256:" + "0" * 64, manifest)) + SIGNATURE_BYTES
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"the manifest cannot be signed as canonical JSON ({exc})") from None
    if trailer > MAX_TRAILER_BYTES:
        raise EnvelopeError(f"statement of {trailer} bytes exceeds {MAX_TRAILER_BYTES} (manifest too large)")
    body = _canonical(_header_json(sender_id, recipient_id, binding, chunk_size, payload_bytes, trailer))
    prefix = _PREAMBLE.pack(MAGIC, VERSION, len(body)) + body
    header = Header(sender_id, recipient_id, binding, chunk_size, payload_bytes, trailer, prefix, b"")
    file_key, key_block = wrap_file_key(recipient.keys, header.key_context)
    header = Header(sender_id, recipient_id, binding, chunk_size, payload_bytes, trailer, prefix, key_block)
    payload_key, statement_key = derive_stream_keys(file_key, header.digest)
    dst.write(prefix + key_block)
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


def read_header(src: BinaryIO) -> Header:
    """Parse and check an envelope's header and size (``src`` must be seekable); ``VerificationError`` if malformed."""
    raw = src.read(_PREAMBLE.size)
    if len(raw) < _PREAMBLE.size:
        raise VerificationError("truncated", "too short to be an envelope")
    magic, version, length = _PREAMBLE.unpack(raw)
    if magic != MAGIC:
        raise VerificationError("corrupt", "not an organfed envelope (bad magic)")
    if version != VERSION:
        raise VerificationError("unsupported-version", f"envelope version {version}; this organfed reads {VERSION}")
    if not 2 <= length <= MAX_HEADER_BYTES:
        raise VerificationError("corrupt", f"header length {length} is out of range")
    body = src.read(length)
    key_block = src.read(KEY_BLOCK_BYTES)
    if len(body) < length or len(key_block) < KEY_BLOCK_BYTES:
        raise VerificationError("truncated", "the envelope ends inside its header")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise VerificationError("corrupt", "header is not valid JSON") from None
    if not isinstance(doc, dict) or set(doc) != _HEADER_KEYS or doc["format"] != "organfed-envelope":
        raise VerificationError("corrupt", "header fields are not those of an organfed envelope")
    if doc["suite"] != SUITE:
        raise VerificationError("unsupported-version", f"cipher suite {str(doc['suite'])[:80]!r} is not supported")
    if _canonical(doc) != body:
        raise VerificationError("corrupt", "header is not in canonical form")
    binding = Binding(doc["run"], doc["round"], doc["nonce"], doc["created_at"], doc["expires_at"])
    problem = binding.problem()
    chunk, payload, trailer = doc["chunk_size"], doc["payload_bytes"], doc["trailer_bytes"]
    if problem is None and not all(isinstance(doc[k], str) and KEY_ID_RE.match(doc[k]) for k in ("sender", "recipient")):
        problem = "key ids must be 16 lowercase hex digits"
    if problem is None and (not _int_in(chunk, 1 << 12, 1 << 24) or chunk & (chunk - 1)):
        problem = "chunk size out of range"
    if problem is None and not (_int_in(payload, 1, MAX_PAYLOAD_BYTES) and _int_in(trailer, SIGNATURE_BYTES + 2, MAX_TRAILER_BYTES)):
        problem = "payload or trailer size out of range"
    if problem is not None:
        raise VerificationError("corrupt", f"bad header: {problem}")
    header = Header(doc["sender"], doc["recipient"], binding, chunk, payload, trailer, raw + body, key_block)
    here = src.tell()
    size = src.seek(0, os.SEEK_END)
    src.seek(here)
    if size < header.envelope_bytes:
        raise VerificationError("truncated", f"the envelope has {size} bytes; its header announces {header.envelope_bytes}")
    if size > header.envelope_bytes:
        raise VerificationError("trailing-data", f"the envelope has {size - header.envelope_bytes} bytes beyond its end")
    return header


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
