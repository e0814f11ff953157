"""Identities: key directories, public identity files, and the trust directory.

A key directory holds ``identity.json`` (public) and ``private-keys.json``
(mode 0600, optionally passphrase-sealed). The short key id is the first 16 hex
digits of SHA-256 over a label and *both* public keys, so an identity file
whose encryption key was swapped no longer matches its id.

A trust directory holds ``enrolled/<key id>.json`` (copies of public
identities) and ``revoked/<key id>.json`` (revocation records). Revocation is
permanent: a revoked key id cannot be enrolled again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from organfed.shared.atomic import write_bytes_atomic
from organfed.shared.crypto import PrivateKeys, PublicKeys, export_private_keys, generate_keys, import_private_keys
from organfed.shared.errors import IdentityError, VerificationError

IDENTITY_FORMAT = "organfed-identity"
IDENTITY_FILE = "identity.json"
PRIVATE_FILE = "private-keys.json"
KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_FILE_BYTES = 64 * 1024


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def key_id_of(keys: PublicKeys) -> str:
    """The short key id: 16 hex digits of SHA-256(label || signing key || encryption key)."""
    return hashlib.sha256(b"organfed-key-id/1\x00" + keys.signing + keys.encryption).hexdigest()[:16]


@dataclass(frozen=True)
class Identity:
    """A party's public identity: a name and its public keys (``key_id`` is derived from the keys)."""

    name: str
    keys: PublicKeys
    created_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise IdentityError(f"identity name {self.name!r} must be 1-64 characters of letters, digits, '.', '_', '-'")

    @property
    def key_id(self) -> str:
        return key_id_of(self.keys)

    def to_json(self) -> dict:
        return {
            "format": IDENTITY_FORMAT, "version": 1, "name": self.name, "key_id": self.key_id,
            "signing_key": base64.b64encode(self.keys.signing).decode(),
            "encryption_key": base64.b64encode(self.keys.encryption).decode(),
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, doc: object) -> Identity:
        if not isinstance(doc, dict) or doc.get("format") != IDENTITY_FORMAT or doc.get("version") != 1:
            raise IdentityError("not an organfed identity (or an unsupported version)")
        try:
            name, key_id, created_at = doc["name"], doc["key_id"], doc["created_at"]
            if not isinstance(created_at, str):
                raise TypeError("created_at must be a string")
            keys = PublicKeys(base64.b64decode(doc["signing_key"], validate=True), base64.b64decode(doc["encryption_key"], validate=True))
            identity = cls(name=name, keys=keys, created_at=created_at)
        except (KeyError, TypeError, ValueError) as exc:
            raise IdentityError(f"malformed identity ({type(exc).__name__}: {exc})") from None
        if key_id != identity.key_id:
            raise IdentityError(f"identity {name!r}: key id {str(key_id)[:20]!r} does not match its keys (file modified?)")
        return identity


@dataclass(frozen=True)
class KeyDir:
    """A loaded key directory: the public identity and the matching private keys."""

    path: Path
    identity: Identity
    keys: PrivateKeys = field(repr=False)


def _read_json(path: Path) -> object:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise IdentityError(f"{path} is too large to be an identity or key file")
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise IdentityError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IdentityError(f"cannot read {path}: {exc}") from None


def _dump(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def create_key_dir(out: Path | str, name: str, *, passphrase: bytes | None = None) -> KeyDir:
    """Create a new identity in ``out`` (which must not already hold keys)."""
    out = Path(out)
    if (out / PRIVATE_FILE).exists() or (out / IDENTITY_FILE).exists():
        raise IdentityError(f"{out} already holds keys; choose another directory")
    keys = generate_keys()
    identity = Identity(name=name, keys=keys.public)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_bytes_atomic(out / PRIVATE_FILE, _dump(export_private_keys(keys, passphrase)), mode=0o600)
    write_bytes_atomic(out / IDENTITY_FILE, _dump(identity.to_json()))
    return KeyDir(out, identity, keys)


def load_identity(path: Path | str) -> Identity:
    """The public identity in ``path`` (an identity file, or a key directory)."""
    path = Path(path)
    return Identity.from_json(_read_json(path / IDENTITY_FILE if path.is_dir() else path))


def load_key_dir(path: Path | str, *, passphrase: bytes | None = None) -> KeyDir:
    """Load a key directory; refuse private keys readable by others or not matching the identity."""
    path = Path(path)
    private = path / PRIVATE_FILE
    try:
        mode = private.stat().st_mode
    except FileNotFoundError:
        raise IdentityError(f"{path} is not a key directory (no {PRIVATE_FILE})") from None
    if mode & 0o077:
        raise IdentityError(f"{private} is accessible by others (mode {stat.S_IMODE(mode):04o}); run chmod 600 on it")
    identity = load_identity(path / IDENTITY_FILE)
    keys = import_private_keys(_read_json(private), passphrase)
    if keys.public != identity.keys:
        raise IdentityError(f"{path}: the private keys do not match {IDENTITY_FILE}")
    return KeyDir(path, identity, keys)


def read_passphrase(*, file: Path | None = None, env: str | None = None) -> bytes | None:
    """A passphrase from a file (first line) or a named environment variable; never from the command line."""
    if file is not None and env is not None:
        raise IdentityError("give a passphrase file or an environment variable, not both")
    if file is not None:
        try:
            text = Path(file).read_bytes().splitlines()[0] if Path(file).stat().st_size else b""
        except OSError as exc:
            raise IdentityError(f"cannot read passphrase file {file}: {exc.strerror or exc}") from None
    elif env is not None:
        if env not in os.environ:
            raise IdentityError(f"environment variable {env} is not set")
        text = os.environ[env].encode()
    else:
        return None
    if not text:
        raise IdentityError("the passphrase is empty")
    return text


@dataclass(frozen=True)
class Revocation:
    key_id: str
    reason: str
    revoked_at: str


@dataclass(frozen=True)
class TrustStore:
    """A directory of enrolled public identities, with permanent revocation."""

    path: Path

    def _file(self, kind: str, key_id: str) -> Path:
        return self.path / kind / f"{key_id}.json"

    def enrol(self, identity: Identity) -> None:
        """Add ``identity``; refuse a revoked key id or a different identity under the same id or name."""
        if self.revocation(identity.key_id) is not None:
            raise IdentityError(f"key id {identity.key_id} was revoked and cannot be enrolled again")
        for other, _ in self.entries():
            if other.key_id == identity.key_id and other.keys != identity.keys:
                raise IdentityError(f"a different identity is already enrolled as {identity.key_id}")
            if other.name == identity.name and other.key_id != identity.key_id:
                raise IdentityError(f"name {identity.name!r} is already enrolled with key id {other.key_id}")
        write_bytes_atomic(self._file("enrolled", identity.key_id), _dump(identity.to_json()))

    def revoke(self, key_id: str, reason: str) -> Revocation:
        """Revoke an enrolled key id for good."""
        if not KEY_ID_RE.match(key_id) or not self._file("enrolled", key_id).exists():
            raise IdentityError(f"key id {key_id!r} is not enrolled in {self.path}")
        record = Revocation(key_id, reason, _now())
        write_bytes_atomic(self._file("revoked", key_id), _dump(record.__dict__))
        return record

    def revocation(self, key_id: str) -> Revocation | None:
        path = self._file("revoked", key_id)
        if not KEY_ID_RE.match(key_id) or not path.exists():
            return None
        doc = _read_json(path)
        if not isinstance(doc, dict) or doc.get("key_id") != key_id:
            raise IdentityError(f"{path} is not a revocation record for {key_id}")
        return Revocation(key_id, str(doc.get("reason", "")), str(doc.get("revoked_at", "")))

    def lookup(self, key_id: str) -> Identity:
        """The enrolled, unrevoked identity ``key_id``; ``VerificationError`` (unknown / revoked sender) otherwise."""
        if not KEY_ID_RE.match(key_id) or not self._file("enrolled", key_id).exists():
            raise VerificationError("unknown-sender", f"key id {key_id[:16]!r} is not enrolled")
        revoked = self.revocation(key_id)
        if revoked is not None:
            raise VerificationError("revoked-sender", f"key id {key_id} was revoked at {revoked.revoked_at}")
        identity = load_identity(self._file("enrolled", key_id))
        if identity.key_id != key_id:
            raise IdentityError(f"trust entry {key_id} holds identity {identity.key_id}")
        return identity

    def entries(self) -> list[tuple[Identity, Revocation | None]]:
        """Every enrolled identity with its revocation record (if any), by name."""
        folder = self.path / "enrolled"
        found = [load_identity(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        return sorted(((i, self.revocation(i.key_id)) for i in found), key=lambda pair: pair[0].name)
