"""The messages between the coordinator and the sites, on top of Flower's records.

A round is two exchanges. ``query`` (hello): the coordinator asks a node which
site key it holds, so it can seal the current organ to it. ``train``: the
coordinator sends :class:`RoundInstructions` (with a fresh nonce, the challenge
the site's envelope must be bound to) and, after the first round, the current
organ sealed to that site; the site replies with its organ sealed to the
coordinator (as raw bytes in an Array, which Flower moves in chunks) and
its training metrics. Nothing else crosses the wire.

What travels in the clear (TLS protects it on the link, but the SuperLink
stores it): the instructions (signed by the coordinator, so a relay cannot
change a hyperparameter unnoticed), the hello, and each site's metrics (token count,
steps, train and validation loss, seconds). Weights never do. The coordinator
takes the weight of a site's organ from its signed manifest, not from these
metrics; they are for the report only.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from organfed.shared.crypto import sign, verify_signature
from organfed.shared.errors import ConfigError, VerificationError
from organfed.shared.identity import KeyDir, TrustStore

HELLO = "query.hello"
TRAIN = "train"
INSTRUCTIONS = "instructions"
SITE = "site"
ORGAN = "organ"
ENVELOPE = "envelope"
METRICS = "metrics"
TRAIN_KEY_PREFIX = "train."
SIGNATURE = "signature"
_BLOB = "bytes"
_SIGNED_CONTEXT = b"organfed-instructions/1\0"


@dataclass(frozen=True)
class RoundInstructions:
    """What a site needs to train one round (``train`` holds TrainConfig hyperparameters)."""

    run_id: str
    round: int
    base_fingerprint: str
    layers: str
    coordinator_key_id: str
    ttl: int
    nonce: str  # the coordinator's challenge: the site's envelope must be bound to it
    train: dict[str, Any]

    def to_record(self, signer: KeyDir) -> ConfigRecord:
        """The instructions as a flat record, signed by ``signer`` (the coordinator)."""
        data: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "train"}
        data.update({TRAIN_KEY_PREFIX + k: v for k, v in self.train.items() if v is not None})
        data[SIGNATURE] = base64.b64encode(sign(signer.keys, _signed_bytes(data))).decode()
        return ConfigRecord(data)

    @classmethod
    def from_record(cls, record: ConfigRecord, trust: TrustStore) -> RoundInstructions:
        """Parse and verify: signed by the enrolled, unrevoked coordinator they name, or a typed error."""
        data = dict(record)
        signature = data.pop(SIGNATURE, None)
        signed = _signed_bytes(data)
        train = {k[len(TRAIN_KEY_PREFIX):]: data.pop(k) for k in list(data) if k.startswith(TRAIN_KEY_PREFIX)}
        expected = {f.name for f in fields(cls)} - {"train"}
        if set(data) != expected:
            raise ConfigError(f"malformed round instructions: keys {sorted(set(data) ^ expected)} differ")
        types = {"run_id": str, "round": int, "base_fingerprint": str, "layers": str, "coordinator_key_id": str, "ttl": int,
                 "nonce": str}
        for name, kind in types.items():
            if not isinstance(data[name], kind) or isinstance(data[name], bool):
                raise ConfigError(f"malformed round instructions: {name} must be {kind.__name__}")
        coordinator = trust.lookup(data["coordinator_key_id"])  # unknown or revoked: VerificationError
        try:
            raw = base64.b64decode(signature if isinstance(signature, str) else "", validate=True)
        except binascii.Error:
            raw = b""
        if not raw:
            raise VerificationError("unsigned", "round instructions carry no signature")
        try:
            verify_signature(coordinator.keys, signed, raw)
        except VerificationError:
            raise VerificationError("bad-signature", f"round instructions are not signed by coordinator "
                                    f"{coordinator.name} ({coordinator.key_id}): changed on the way?") from None
        return cls(**data, train=train)


def _signed_bytes(data: dict[str, Any]) -> bytes:
    """What the coordinator signs: a context string, then the record's fields as canonical JSON."""
    try:
        return _SIGNED_CONTEXT + json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError):
        raise ConfigError("malformed round instructions: values must be JSON numbers, strings or booleans") from None


def bytes_record(blob: bytes) -> ArrayRecord:
    """Raw bytes as an ArrayRecord (Flower splits large Arrays into chunks on the wire)."""
    return ArrayRecord({_BLOB: Array(dtype="uint8", shape=(len(blob),), stype="raw-bytes", data=bytes(blob))})


def record_bytes(record: object) -> bytes:
    """The bytes of a record made by :func:`bytes_record`; :class:`ConfigError` for anything else."""
    if not isinstance(record, ArrayRecord) or _BLOB not in record or not isinstance(record[_BLOB].data, bytes):
        raise ConfigError("malformed message: expected a byte record")
    return record[_BLOB].data


def hello_reply(key_id: str, site: str) -> RecordDict:
    return RecordDict({SITE: ConfigRecord({"key_id": key_id, "name": site})})


def train_reply(envelope: bytes, metrics: dict[str, float | int]) -> RecordDict:
    return RecordDict({ENVELOPE: bytes_record(envelope), METRICS: MetricRecord(metrics)})
