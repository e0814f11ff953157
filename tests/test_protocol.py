"""Round instructions: signed by the coordinator; a changed, unsigned or foreign-signed record is refused."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord

from organfed.shared.errors import ConfigError, VerificationError
from organfed.shared.identity import TrustStore, create_key_dir
from organfed.shared.protocol import SIGNATURE, RoundInstructions


@pytest.fixture(scope="module")
def parties(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    coordinator, stranger = create_key_dir(root / "coordinator", "coordinator"), create_key_dir(root / "stranger", "stranger")
    trust = TrustStore(root / "site-trust")
    trust.enrol(coordinator.identity)
    return coordinator, stranger, trust


def instructions(key_id: str) -> RoundInstructions:
    return RoundInstructions(run_id="run-1", round=2, base_fingerprint="sha256:" + "0" * 64, layers="2:5",
                             coordinator_key_id=key_id, ttl=900, nonce="7" * 32,
                             train={"steps": 30, "learning_rate": 0.001, "mode": "in-situ"})


def test_signed_instructions_round_trip(parties):
    coordinator, _, trust = parties
    sent = instructions(coordinator.identity.key_id)
    assert RoundInstructions.from_record(sent.to_record(coordinator), trust) == sent


@pytest.mark.parametrize("field,value", [("train.learning_rate", 10.0), ("train.steps", 3000), ("round", 3), ("layers", "0:3"),
                                         ("nonce", "8" * 32), ("train.extra", 1)])
def test_a_changed_value_breaks_the_signature(parties, field, value):
    coordinator, _, trust = parties
    record = dict(instructions(coordinator.identity.key_id).to_record(coordinator))
    record[field] = value
    with pytest.raises(VerificationError) as info:
        RoundInstructions.from_record(ConfigRecord(record), trust)
    assert info.value.reason == "bad-signature"


def test_unsigned_or_foreign_signed_instructions_are_refused(parties):
    coordinator, stranger, trust = parties
    record = dict(instructions(coordinator.identity.key_id).to_record(coordinator))
    del record[SIGNATURE]
    with pytest.raises(VerificationError) as info:
        RoundInstructions.from_record(ConfigRecord(record), trust)
    assert info.value.reason == "unsigned"
    forged = instructions(coordinator.identity.key_id).to_record(stranger)  # names the coordinator, signed by another
    with pytest.raises(VerificationError) as info:
        RoundInstructions.from_record(forged, trust)
    assert info.value.reason == "bad-signature"
    with pytest.raises(VerificationError) as info:  # names a coordinator this site never enrolled
        RoundInstructions.from_record(instructions(stranger.identity.key_id).to_record(stranger), trust)
    assert info.value.reason == "unknown-sender"


def test_malformed_instructions_are_a_config_error(parties):
    coordinator, _, trust = parties
    record = dict(instructions(coordinator.identity.key_id).to_record(coordinator))
    del record["ttl"]
    with pytest.raises(ConfigError, match="keys \\['ttl'\\] differ"):
        RoundInstructions.from_record(ConfigRecord(record), trust)
    record = dict(instructions(coordinator.identity.key_id).to_record(coordinator))
    record["round"] = "2"
    with pytest.raises(ConfigError, match="round must be int"):
        RoundInstructions.from_record(ConfigRecord(record), trust)
