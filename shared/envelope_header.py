"""The envelope header (format version 1): what it binds, and the checks made on it before any decryption.

The header is canonical JSON after a fixed preamble, followed by the key block.
It fixes the envelope's exact size, so :func:`read_header` finds truncation and
extension before a byte is decrypted. Everything here is unauthenticated until
the payload and the signed statement check out (``envelope.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from organfed.shared.crypto import KEY_BLOCK_BYTES, SIGNATURE_BYTES, SUITE, TAG_BYTES
from organfed.shared.errors import EnvelopeError, VerificationError
from organfed.shared.identity import KEY_ID_RE

MAGIC = b"OFEDENV\n"
VERSION = 1
_PREAMBLE = struct.Struct(">8sHI")
MAX_HEADER_BYTES = 64 * 1024
MAX_TRAILER_BYTES = 2 * 1024 * 1024
MAX_PAYLOAD_BYTES = 1 << 50
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
_HEADER_KEYS = {"format", "suite", "sender", "recipient", "run", "round", "nonce", "created_at", "expires_at",
                "chunk_size", "payload_bytes", "trailer_bytes"}


def canonical_json(obj: Any) -> bytes:
    """The one JSON encoding that is signed and hashed: sorted keys, no spaces, ASCII, no NaN."""
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

    @classmethod
    def draft(cls, sender: str, recipient: str, binding: Binding, chunk_size: int, payload_bytes: int) -> Header:
        """A header to seal with, before its trailer size is known; :class:`EnvelopeError` on bad values."""
        if not _int_in(chunk_size, 1 << 12, 1 << 24) or chunk_size & (chunk_size - 1):
            raise EnvelopeError("chunk size must be a power of two from 4 KiB to 16 MiB")
        if not _int_in(payload_bytes, 1, MAX_PAYLOAD_BYTES):
            raise EnvelopeError(f"payload of {payload_bytes} bytes is empty or too large")
        if (problem := binding.problem()) is not None:
            raise EnvelopeError(problem)
        return cls(sender, recipient, binding, chunk_size, payload_bytes, 0, b"", b"")

    def with_trailer(self, trailer_bytes: int) -> Header:
        """This draft with its trailer size and the encoded preamble and header (the key block still empty)."""
        if trailer_bytes > MAX_TRAILER_BYTES:
            raise EnvelopeError(f"statement of {trailer_bytes} bytes exceeds {MAX_TRAILER_BYTES} (manifest too large)")
        b = self.binding
        body = canonical_json({
            "format": "organfed-envelope", "suite": SUITE, "sender": self.sender, "recipient": self.recipient,
            "run": b.run_id, "round": b.round, "nonce": b.nonce, "created_at": b.created_at, "expires_at": b.expires_at,
            "chunk_size": self.chunk_size, "payload_bytes": self.payload_bytes, "trailer_bytes": trailer_bytes,
        })
        return dataclasses.replace(self, trailer_bytes=trailer_bytes, prefix=_PREAMBLE.pack(MAGIC, VERSION, len(body)) + body)

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
    if canonical_json(doc) != body:
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
