"""All of organfed's cryptography, behind a few typed functions.

This is the only module that imports ``cryptography``; hazardous primitives stay
private to it. The suite is fixed (no knobs), and every failure to verify or
decrypt raises :class:`VerificationError` with a machine-readable reason.

* signatures: Ed25519;
* key transport: HPKE base mode (RFC 9180), DHKEM(X25519, HKDF-SHA256),
  HKDF-SHA256, AES-256-GCM, wrapping a fresh 32-byte file key per envelope;
* payload: HKDF-SHA256 derives a payload key and a statement key from the file
  key; each is used with AES-256-GCM in the STREAM construction (nonce = 88-bit
  big-endian chunk counter || last-chunk flag, as age does);
* private keys at rest: scrypt (N=2^17, r=8, p=1) and AES-256-GCM;
* transport for Flower: a P-256 CA and server certificate for TLS, and
  ECDSA P-384 SuperNode authentication keys in OpenSSH format.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from organfed.shared.atomic import write_bytes_atomic
from organfed.shared.errors import IdentityError, VerificationError

SUITE = "hpke-x25519-hkdfsha256-aes256gcm/stream-aes256gcm/ed25519"
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
TAG_BYTES = 16
FILE_KEY_BYTES = 32
KEY_BLOCK_BYTES = 32 + FILE_KEY_BYTES + TAG_BYTES
MAX_CHUNKS = 2**88
PRIVATE_FORMAT = "organfed-private-keys"
SCRYPT_LOG_N = 17

_HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
_DER = (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass(frozen=True)
class PublicKeys:
    """A party's raw public keys: Ed25519 for signatures, X25519 for encryption."""

    signing: bytes
    encryption: bytes

    def __post_init__(self) -> None:
        for name in ("signing", "encryption"):
            if len(getattr(self, name)) != PUBLIC_KEY_BYTES:
                raise IdentityError(f"{name} public key must be {PUBLIC_KEY_BYTES} bytes")


class PrivateKeys:
    """A party's private keys (opaque: never printed, never serialised except by :func:`export_private_keys`)."""

    __slots__ = ("_signing", "_encryption")

    def __init__(self, signing: ed25519.Ed25519PrivateKey, encryption: x25519.X25519PrivateKey) -> None:
        self._signing = signing
        self._encryption = encryption

    @property
    def public(self) -> PublicKeys:
        return PublicKeys(
            self._signing.public_key().public_bytes(*_RAW), self._encryption.public_key().public_bytes(*_RAW)
        )

    def __repr__(self) -> str:
        return "PrivateKeys(<redacted>)"


def generate_keys() -> PrivateKeys:
    """A fresh Ed25519 signing key and X25519 encryption key."""
    return PrivateKeys(ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)


def export_private_keys(keys: PrivateKeys, passphrase: bytes | None, *, scrypt_log_n: int = SCRYPT_LOG_N) -> dict:
    """A JSON-able document holding both private keys (PKCS#8 DER), scrypt+AES-GCM sealed if ``passphrase``."""
    plain = b"".join(len(d).to_bytes(2, "big") + d for d in (keys._signing.private_bytes(*_DER), keys._encryption.private_bytes(*_DER)))
    doc: dict = {"format": PRIVATE_FORMAT, "version": 1}
    if passphrase is None:
        return doc | {"protection": "none", "keys": _b64(plain)}
    salt, nonce = os.urandom(16), os.urandom(12)
    key = Scrypt(salt=salt, length=32, n=2**scrypt_log_n, r=8, p=1).derive(passphrase)
    sealed = AESGCM(key).encrypt(nonce, plain, PRIVATE_FORMAT.encode())
    kdf = {"name": "scrypt", "log_n": scrypt_log_n, "r": 8, "p": 1, "salt": _b64(salt)}
    return doc | {"protection": "scrypt-aes256gcm", "kdf": kdf, "nonce": _b64(nonce), "keys": _b64(sealed)}


def import_private_keys(doc: object, passphrase: bytes | None) -> PrivateKeys:
    """The keys in a document from :func:`export_private_keys`; :class:`IdentityError` on any problem."""
    if not isinstance(doc, dict) or doc.get("format") != PRIVATE_FORMAT or doc.get("version") != 1:
        raise IdentityError("not an organfed private-key file (or an unsupported version)")
    try:
        blob = _unb64(doc.get("keys"))
        if doc.get("protection") == "scrypt-aes256gcm":
            if passphrase is None:
                raise IdentityError("the private keys are passphrase-protected: give --passphrase-file or --passphrase-env")
            kdf = doc["kdf"]
            if kdf.get("name") != "scrypt" or not (10 <= kdf["log_n"] <= 22) or kdf["r"] != 8 or kdf["p"] != 1:
                raise IdentityError("unsupported key-derivation parameters in the private-key file")
            key = Scrypt(salt=_unb64(kdf["salt"]), length=32, n=2 ** kdf["log_n"], r=8, p=1).derive(passphrase)
            blob = AESGCM(key).decrypt(_unb64(doc["nonce"]), blob, PRIVATE_FORMAT.encode())
        elif doc.get("protection") != "none":
            raise IdentityError(f"unknown private-key protection {doc.get('protection')!r}")
        n = int.from_bytes(blob[:2], "big")
        signing_der, rest = blob[2 : 2 + n], blob[2 + n :]
        encryption_der = rest[2 : 2 + int.from_bytes(rest[:2], "big")]
        signing = serialization.load_der_private_key(signing_der, None)
        encryption = serialization.load_der_private_key(encryption_der, None)
    except InvalidTag:
        raise IdentityError("wrong passphrase (or the private-key file was modified)") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise IdentityError(f"malformed private-key file ({type(exc).__name__})") from None
    if not isinstance(signing, ed25519.Ed25519PrivateKey) or not isinstance(encryption, x25519.X25519PrivateKey):
        raise IdentityError("private-key file holds keys of the wrong type")
    return PrivateKeys(signing, encryption)


def sign(keys: PrivateKeys, message: bytes) -> bytes:
    """An Ed25519 signature of ``message``."""
    return keys._signing.sign(message)


def verify_signature(public: PublicKeys, message: bytes, signature: bytes) -> None:
    """Raise ``VerificationError("bad-signature")`` unless ``signature`` is ``public``'s over ``message``."""
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public.signing).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise VerificationError("bad-signature", "the statement is not signed by the sender's enrolled key") from None


def wrap_file_key(recipient: PublicKeys, context: bytes) -> tuple[bytes, bytes]:
    """A fresh file key and its HPKE encapsulation to ``recipient`` (``KEY_BLOCK_BYTES``), bound to ``context``."""
    file_key = os.urandom(FILE_KEY_BYTES)
    public = x25519.X25519PublicKey.from_public_bytes(recipient.encryption)
    return file_key, _HPKE.encrypt(file_key, public, info=context)


def unwrap_file_key(keys: PrivateKeys, key_block: bytes, context: bytes) -> bytes:
    """The file key in ``key_block``; ``VerificationError("corrupt")`` if it is not ours or ``context`` differs."""
    try:
        file_key = _HPKE.decrypt(key_block, keys._encryption, info=context)
    except (InvalidTag, ValueError):
        raise VerificationError("corrupt", "the file key does not open (header modified, or not sealed to this key)") from None
    if len(file_key) != FILE_KEY_BYTES:
        raise VerificationError("corrupt", "the file key has the wrong length")
    return file_key


def derive_stream_keys(file_key: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """The payload key and the statement key, derived from the file key with HKDF-SHA256."""
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=b"organfed-envelope/1 stream keys").derive(file_key)
    return okm[:32], okm[32:]


class ChunkCipher:
    """AES-256-GCM in the STREAM construction: chunk ``i`` uses nonce ``i`` (11 bytes) || last-flag (1 byte)."""

    def __init__(self, key: bytes, aad: bytes) -> None:
        self._aead = AESGCM(key)
        self._aad = aad

    @staticmethod
    def _nonce(index: int, last: bool) -> bytes:
        if not 0 <= index < MAX_CHUNKS:
            raise VerificationError("corrupt", "chunk counter out of range")
        return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")

    def seal_into(self, index: int, last: bool, data: memoryview | bytes, out: bytearray) -> memoryview:
        """Encrypt ``data`` into ``out`` (at least ``len(data) + TAG_BYTES`` long); return the written view."""
        n = len(data) + TAG_BYTES
        view = memoryview(out)[:n]
        self._aead.encrypt_into(self._nonce(index, last), data, self._aad, view)
        return view

    def open_into(self, index: int, last: bool, data: memoryview | bytes, out: bytearray) -> memoryview:
        """Decrypt and authenticate ``data`` into ``out``; ``VerificationError("corrupt")`` on any mismatch."""
        if len(data) < TAG_BYTES:
            raise VerificationError("corrupt", f"chunk {index} is shorter than its tag")
        view = memoryview(out)[: len(data) - TAG_BYTES]
        try:
            self._aead.decrypt_into(self._nonce(index, last), data, self._aad, view)
        except InvalidTag:
            raise VerificationError("corrupt", f"chunk {index} fails authentication (modified, reordered or misplaced)") from None
        return view


# -- transport credentials for Flower: TLS and SuperNode authentication ----------------------

@dataclass(frozen=True)
class TlsFiles:
    """A CA certificate and a server certificate with its private key, as PEM files."""

    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def write_tls_files(out: Path, *, hosts: Sequence[str] = ("127.0.0.1", "localhost"), days: int = 30) -> TlsFiles:
    """A fresh CA (P-256) and a server certificate for ``hosts`` (IP addresses or DNS names), in ``out``.

    The private keys are written with mode 0600; the CA key is not kept, so the
    CA can sign nothing else.
    """
    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder().subject_name(_name("organfed federation CA")).issuer_name(_name("organfed federation CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True).add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(out / "ca.pem", out / "server.pem", out / "server.key")
    write_bytes_atomic(files.ca, ca.public_bytes(serialization.Encoding.PEM))
    write_bytes_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    write_bytes_atomic(files.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()), mode=0o600)
    return files


def write_node_auth_key(path: Path) -> tuple[Path, Path]:
    """A SuperNode authentication key: ECDSA P-384 in OpenSSH format (private at ``path``, mode 0600; public at ``path.pub``)."""
    key = ec.generate_private_key(ec.SECP384R1())
    public = path.with_name(path.name + ".pub")
    write_bytes_atomic(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               serialization.NoEncryption()), mode=0o600)
    write_bytes_atomic(public, key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                             serialization.PublicFormat.OpenSSH) + b" organfed-supernode\n")
    return path, public
