"""The messages between the coordinator and the sites, on top of Flower's records.

A round is two exchanges. ``query`` (hello): the coordinator asks a node which
site key it holds, so it can seal the current organ to it. ``train``: the
coordinator sends :class:`RoundInstructions` (with a fresh nonce, the challenge
the site's envelope must be bound to) and, after the first round, the current
organ sealed to that site; the site replies with its organ sealed to the
coordinator (as raw bytes in an Array, which Flower moves in chunks) and
its training metrics. Nothing else crosses the wire.

What travels in the clear (TLS protects it on the link, but the SuperLink
stores it): the instructions, the hello, and each site's metrics (token count,
steps, train and validation loss, seconds). Weights never do. The coordinator
takes the weight of a site's organ from its signed manifest, not from these
metrics; they are for the report only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from organfed.shared.errors import ConfigError

HELLO = "query.hello"
TRAIN = "train"
INSTRUCTIONS = "instructions"
SITE = "site"
ORGAN = "organ"
ENVELOPE = "envelope"
METRICS = "metrics"
TRAIN_KEY_PREFIX = "train."
_BLOB = "bytes"


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

    def to_record(self) -> ConfigRecord:
        data: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "train"}
        data.update({TRAIN_KEY_PREFIX + k: v for k, v in self.train.items() if v is not None})
        return ConfigRecord(data)

    @classmethod
    def from_record(cls, record: ConfigRecord) -> RoundInstructions:
        data = dict(record)
        train = {k[len(TRAIN_KEY_PREFIX):]: data.pop(k) for k in list(data) if k.startswith(TRAIN_KEY_PREFIX)}
        expected = {f.name for f in fields(cls)} - {"train"}
        if set(data) != expected:
            raise ConfigError(f"malformed round instructions: keys {sorted(set(data) ^ expected)} differ")
        types = {"run_id": str, "round": int, "base_fingerprint": str, "layers": str, "coordinator_key_id": str, "ttl": int,
                 "nonce": str}
        for name, kind in types.items():
            if not isinstance(data[name], kind) or isinstance(data[name], bool):
                raise ConfigError(f"malformed round instructions: {name} must be {kind.__name__}")
        return cls(**data, train=train)


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
