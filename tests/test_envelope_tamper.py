"""The tamper matrix: every modification, misdirection or replay of an envelope is refused with its reason.

Each case asserts the typed error and its reason, that nothing is left in the
output directory (no organ, no temporary file) and that the refusal is audited.
"""

from __future__ import annotations

import io
import json
import time

import pytest
import torch

from organfed.shared import envelope as envelope_module
from organfed.shared.audit_log import verify_log
from organfed.shared.crypto import KEY_BLOCK_BYTES, SIGNATURE_BYTES, TAG_BYTES
from organfed.shared.envelope_header import read_header
from organfed.shared.errors import EnvelopeError, VerificationError
from organfed.shared.identity import KeyDir, create_key_dir
from organfed.shared.organ import load_organ, make_organ, save_organ
from organfed.shared.policy import OrganPolicy
from organfed.shared.replay import ReplayCache
from organfed.shared.sealing import MAX_TTL


def regions(env: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges of every region of an envelope: preamble fields, header, key block, each chunk, trailer parts."""
    header = read_header(io.BytesIO(env))
    body_end = len(header.prefix)
    found = {"magic": (0, 8), "version": (8, 10), "header-length": (10, 14), "header": (14, body_end),
             "key-block": (body_end, body_end + KEY_BLOCK_BYTES)}
    pos = body_end + KEY_BLOCK_BYTES
    for i in range(header.num_chunks):
        size = header.chunk_plain_bytes(i) + TAG_BYTES
        found[f"chunk-{i}"] = (pos, pos + size)
        pos += size
    signature = pos + header.trailer_bytes - SIGNATURE_BYTES
    found |= {"statement": (pos, signature), "signature": (signature, signature + SIGNATURE_BYTES),
              "trailer-tag": (signature + SIGNATURE_BYTES, signature + SIGNATURE_BYTES + TAG_BYTES)}
    assert found["trailer-tag"][1] == len(env)
    return found


def flip(env: bytes, offset: int, mask: int = 0x01) -> bytes:
    data = bytearray(env)
    data[offset] ^= mask
    return bytes(data)


def refused(world, envelope, reason: str, **kwargs) -> VerificationError:
    """Open ``envelope``; assert it is refused for ``reason``, leaves no file and is audited."""
    with pytest.raises(VerificationError) as info:
        world.open(envelope, **kwargs)
    assert info.value.reason == reason, info.value
    assert world.outputs() == []
    if kwargs.get("audit", world.audit) is not None:
        last = world.audit.path.read_text().splitlines()[-1]
        assert json.loads(last)["decision"] == "refuse" and json.loads(last)["reason"] == reason
        verify_log(world.audit.path)
    return info.value


@pytest.fixture
def sealed(envelope_world) -> bytes:
    return envelope_world.seal()


def test_regions_cover_several_chunks(sealed):
    names = regions(sealed)
    assert sum(name.startswith("chunk-") for name in names) >= 5


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_bit_flip_in_every_region(envelope_world, sealed, where):
    expected = {"version": "unsupported-version"}
    for name, (start, end) in regions(sealed).items():
        offset = {"start": start, "middle": (start + end) // 2, "end": end - 1}[where]
        if name == "header-length":
            offset = end - 1  # the low byte: a length off by one, never one past the file
        if name == "header":
            offset = sealed.index(b'"nonce":"', start) + len(b'"nonce":"') + 3  # inside a value, JSON stays valid
        refused(envelope_world, flip(sealed, offset), expected.get(name, "corrupt"), audit=None)


def test_every_single_byte_of_the_header_is_covered(envelope_world, sealed):
    end = regions(sealed)["key-block"][1]
    allowed = {"corrupt", "unsupported-version", "truncated", "trailing-data", "wrong-recipient", "unknown-sender",
               "wrong-run", "wrong-round", "expired", "bad-expiry"}
    reasons = set()
    for offset in range(end):
        with pytest.raises(VerificationError) as info:
            envelope_world.open(flip(sealed, offset, 0x04), audit=None)
        reasons.add(info.value.reason)
    assert reasons <= allowed and "corrupt" in reasons
    assert envelope_world.outputs() == []


@pytest.mark.parametrize("cut", ["empty", "preamble", "header", "key-block", "mid-chunk", "chunk-boundary",
                                 "before-trailer", "last-byte"])
def test_truncation(envelope_world, sealed, cut):
    r = regions(sealed)
    length = {"empty": 0, "preamble": 9, "header": (r["header"][0] + r["header"][1]) // 2,
              "key-block": r["key-block"][0] + 5, "mid-chunk": (r["chunk-1"][0] + r["chunk-1"][1]) // 2,
              "chunk-boundary": r["chunk-2"][0], "before-trailer": r["statement"][0], "last-byte": len(sealed) - 1}[cut]
    refused(envelope_world, sealed[:length], "truncated")


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 100, "copy-of-chunk"])
def test_extension(envelope_world, sealed, extra):
    if extra == "copy-of-chunk":
        start, end = regions(sealed)["chunk-0"]
        extra = sealed[start:end]
    refused(envelope_world, sealed + extra, "trailing-data")


def test_chunks_reordered_or_duplicated(envelope_world, sealed):
    r = regions(sealed)
    (a0, a1), (b0, b1) = r["chunk-0"], r["chunk-1"]
    refused(envelope_world, sealed[:a0] + sealed[b0:b1] + sealed[a0:a1] + sealed[b1:], "corrupt")
    refused(envelope_world, sealed[:b0] + sealed[a0:a1] + sealed[b1:], "corrupt")


def test_envelopes_swapped_between_senders(envelope_world):
    from_a, from_b = envelope_world.seal(), envelope_world.seal(envelope_world.parties.site_b)
    split = regions(from_a)["chunk-0"][0]
    refused(envelope_world, from_a[:split] + from_b[split:], "corrupt")
    claim_a = from_b.replace(envelope_world.parties.site_b.identity.key_id.encode(),
                             envelope_world.parties.site_a.identity.key_id.encode())
    refused(envelope_world, claim_a, "corrupt")
    refused(envelope_world, from_a, "wrong-sender", expected_sender=envelope_world.parties.site_b.identity.key_id)
    assert envelope_world.open(from_b, expected_sender=envelope_world.parties.site_b.identity.key_id).path.exists()


def test_wrong_recipient(envelope_world):
    other = envelope_world.parties.other_coordinator
    to_other = envelope_world.seal(recipient=other)
    refused(envelope_world, to_other, "wrong-recipient")
    relabelled = to_other.replace(other.identity.key_id.encode(), envelope_world.parties.coordinator.identity.key_id.encode())
    refused(envelope_world, relabelled, "corrupt")


def test_replay_is_refused_even_after_a_restart(envelope_world, sealed):
    assert envelope_world.open(sealed).path.exists()
    (envelope_world.out_dir / "opened.safetensors").unlink()
    refused(envelope_world, sealed, "replayed-nonce", name="again.safetensors")
    restarted = ReplayCache(envelope_world.replay.path)
    refused(envelope_world, sealed, "replayed-nonce", replay=restarted)


def test_expiry(envelope_world):
    sealed = envelope_world.seal(ttl=60)
    refused(envelope_world, sealed, "expired", now=time.time() + 61)
    refused(envelope_world, envelope_world.seal(ttl=MAX_TTL + 3600), "bad-expiry")
    refused(envelope_world, envelope_world.seal(now=time.time() + 3600), "bad-expiry")


def test_unknown_and_revoked_senders(envelope_world, tmp_path):
    stranger = create_key_dir(tmp_path / "stranger", "stranger")
    refused(envelope_world, envelope_world.seal(stranger), "unknown-sender")
    envelope_world.trust.revoke(envelope_world.parties.site_b.identity.key_id, "key lost")
    refused(envelope_world, envelope_world.seal(envelope_world.parties.site_b), "revoked-sender")


def test_wrong_run_and_round(envelope_world):
    refused(envelope_world, envelope_world.seal(run_id="run-0"), "wrong-run")
    refused(envelope_world, envelope_world.seal(round=2), "wrong-round")


def test_an_envelope_bound_to_another_challenge_is_refused(envelope_world):
    challenge, other = "ab" * 16, "cd" * 16
    refused(envelope_world, envelope_world.seal(nonce=other), "wrong-nonce", expected_nonce=challenge)
    refused(envelope_world, envelope_world.seal(), "wrong-nonce", expected_nonce=challenge)  # a random nonce
    assert envelope_world.open(envelope_world.seal(nonce=challenge), expected_nonce=challenge).nonce == challenge


def test_a_malformed_challenge_cannot_be_sealed(envelope_world):
    with pytest.raises(EnvelopeError, match="nonce must be 32 lowercase hex digits"):
        envelope_world.seal(nonce="not-a-nonce")


def test_impostor_signature(envelope_world):
    a, b = envelope_world.parties.site_a, envelope_world.parties.site_b
    impostor = KeyDir(b.path, a.identity, b.keys)  # claims site A's key id, signs with site B's key
    refused(envelope_world, envelope_world.seal(impostor), "bad-signature")


def test_an_impostor_is_refused_for_the_signature_even_with_a_broken_organ(envelope_world, tmp_path, monkeypatch):
    """The content check runs on the stream, but nothing manifest-driven runs and no verdict is given before the
    signature has passed: an impostor is refused for that, whatever its organ holds."""
    from organfed.shared import content_check

    a, b = envelope_world.parties.site_a, envelope_world.parties.site_b
    organ = load_organ(envelope_world.parties.organ)
    tensors = {k: v.clone() for k, v in organ.tensors.items()}
    tensors[sorted(tensors)[0]].view(-1)[0] = torch.nan
    broken = save_organ(make_organ(tensors, organ.manifest), tmp_path / "nan.safetensors")
    manifest_checks = []
    monkeypatch.setattr(content_check, "check_entries", lambda *args: manifest_checks.append(args))
    refused(envelope_world, envelope_world.seal(KeyDir(b.path, a.identity, b.keys), organ=broken), "bad-signature")
    assert manifest_checks == []
    refused(envelope_world, envelope_world.seal(organ=broken), "organ-content")  # signed: now the checks run
    assert len(manifest_checks) == 1


def test_digest_mismatch(envelope_world, monkeypatch):
    import hashlib

    monkeypatch.setattr(envelope_module, "organ_hasher", lambda: hashlib.sha256(b"a lying sender"))
    sealed = envelope_world.seal()
    monkeypatch.undo()
    refused(envelope_world, sealed, "digest-mismatch")


def test_broken_organ_content(envelope_world, tmp_path):
    organ = load_organ(envelope_world.parties.organ)
    tensors = dict(organ.tensors)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = torch.nan
    broken = save_organ(make_organ(tensors, organ.manifest), tmp_path / "nan.safetensors")
    error = refused(envelope_world, envelope_world.seal(organ=broken), "organ-content")
    assert "NaN" in error.detail and str(tmp_path) not in error.detail


def test_policy(envelope_world, sealed):
    manifest = load_organ(envelope_world.parties.organ).manifest
    refused(envelope_world, sealed, "policy", policy=OrganPolicy(base_fingerprint="sha256:" + "0" * 64))
    refused(envelope_world, sealed, "policy", policy=OrganPolicy.like(manifest, max_norm=1e-3))
    refused(envelope_world, sealed, "policy", policy=OrganPolicy(layers=(0, 3)))
    refused(envelope_world, sealed, "policy", policy=OrganPolicy(max_bytes=1000))
    accepted = envelope_world.open(sealed, policy=OrganPolicy.like(manifest, max_norm=1e6))
    assert accepted.manifest == manifest
