"""Sealing and opening: round trips (files, bytes, CLI), the format's invariants, and seal-side errors."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from organfed.shared.audit_log import verify_log
from organfed.shared.cli.main import main
from organfed.shared.envelope import Statement, open_file, open_stream, seal_file, seal_stream
from organfed.shared.envelope_header import Binding, read_header
from organfed.shared.errors import ConfigError, EnvelopeError, OrganFormatError, ReplayCacheError, VerificationError
from organfed.shared.organ import read_manifest
from organfed.shared.replay import ReplayCache

NOW = 1_800_000_000


def test_round_trip_from_bytes_and_from_a_file(envelope_world, tmp_path):
    organ = envelope_world.parties.organ
    sealed = envelope_world.seal()
    assert isinstance(sealed, bytes)
    accepted = envelope_world.open(sealed)
    assert accepted.path.read_bytes() == organ.read_bytes()
    assert stat.S_IMODE(accepted.path.stat().st_mode) == 0o600
    assert accepted.manifest == read_manifest(organ)
    assert accepted.sender.name == "site-a" and (accepted.run_id, accepted.round) == ("run-1", 1)
    assert accepted.norm > 0

    path = envelope_world.seal(out=tmp_path / "organ.env")
    assert path == tmp_path / "organ.env"
    again = envelope_world.open(path, name="second.safetensors")
    assert again.path.read_bytes() == organ.read_bytes() and again.nonce != accepted.nonce
    assert envelope_world.outputs() == ["opened.safetensors", "second.safetensors"]
    lines = [json.loads(line) for line in envelope_world.audit.path.read_text().splitlines()]
    assert [(x["decision"], x["digest"]) for x in lines] == [("accept", accepted.digest), ("accept", again.digest)]
    assert verify_log(envelope_world.audit.path).lines == 2


def test_envelope_hides_the_organ_and_its_manifest(envelope_world):
    organ = envelope_world.parties.organ.read_bytes()
    sealed = envelope_world.seal()
    manifest = read_manifest(envelope_world.parties.organ)
    assert manifest.base_fingerprint.encode() not in sealed
    assert b"organfed.manifest" not in sealed and organ[5000:5064] not in sealed
    assert envelope_world.seal() != sealed  # fresh nonce, file key and ephemeral key every time


def test_header_announces_the_exact_size(envelope_world):
    sealed = envelope_world.seal(chunk_size=4096)
    header = read_header(io.BytesIO(sealed))
    assert header.envelope_bytes == len(sealed)
    assert header.payload_bytes == envelope_world.parties.organ.stat().st_size
    assert header.num_chunks == -(-header.payload_bytes // 4096)
    assert header.sender == envelope_world.parties.site_a.identity.key_id
    assert header.binding.run_id == "run-1" and len(header.binding.nonce) == 32


@pytest.mark.parametrize("size", [1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 1])
def test_stream_layer_any_payload_size(envelope_parties, size):
    payload = os.urandom(size)
    binding = Binding.new("run-1", 0, ttl=60, now=NOW)
    sealed = io.BytesIO()
    digest = seal_stream(io.BytesIO(payload), sealed, sender=envelope_parties.site_a,
                         recipient=envelope_parties.coordinator.identity, binding=binding, payload_bytes=size,
                         manifest={"any": ["json", 1.5]}, chunk_size=4096)
    src = io.BytesIO(sealed.getvalue())
    header = read_header(src)
    out = io.BytesIO()
    statement = open_stream(src, out, header, key=envelope_parties.coordinator, sender=envelope_parties.site_a.identity)
    assert out.getvalue() == payload
    assert statement == Statement(header.sender, header.recipient, binding, size, digest, {"any": ["json", 1.5]})


def test_open_file_renames_only_after_the_check(envelope_parties, tmp_path):
    binding = Binding.new("run-1", 0, ttl=60, now=NOW)
    (tmp_path / "payload").write_bytes(b"x" * 10000)
    env = seal_file(tmp_path / "payload", tmp_path / "env", sender=envelope_parties.site_a,
                    recipient=envelope_parties.coordinator.identity, binding=binding, manifest={})
    out = tmp_path / "out" / "payload"

    def refuse(tmp: Path, statement: Statement) -> None:
        assert tmp.read_bytes() == b"x" * 10000 and not out.exists()
        raise VerificationError("policy", "no thanks")

    with open(env, "rb") as src, pytest.raises(VerificationError):
        open_file(src, out, read_header(src), key=envelope_parties.coordinator, sender=envelope_parties.site_a.identity,
                  check=refuse)
    assert list((tmp_path / "out").iterdir()) == []
    with open(env, "rb") as src:
        statement, checked = open_file(src, out, read_header(src), key=envelope_parties.coordinator,
                                       sender=envelope_parties.site_a.identity, check=lambda tmp, st: "ok")
    assert checked == "ok" and out.read_bytes() == b"x" * 10000 and statement.organ_bytes == 10000


def test_seal_refuses_bad_bindings_and_non_organs(envelope_world, tmp_path):
    with pytest.raises(EnvelopeError, match="run id"):
        envelope_world.seal(run_id="../etc")
    with pytest.raises(EnvelopeError, match="round"):
        envelope_world.seal(round=-1)
    with pytest.raises(EnvelopeError, match="ttl"):
        envelope_world.seal(ttl=0)
    with pytest.raises(EnvelopeError, match="chunk size"):
        envelope_world.seal(chunk_size=1000)
    (tmp_path / "text.safetensors").write_text("hello")
    with pytest.raises(OrganFormatError):
        envelope_world.seal(organ=tmp_path / "text.safetensors")


def test_open_refuses_to_overwrite_and_reports_missing_envelopes(envelope_world, tmp_path):
    (envelope_world.out_dir / "opened.safetensors").write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="already exists"):
        envelope_world.open(envelope_world.seal())
    with pytest.raises(EnvelopeError, match="cannot read envelope"):
        envelope_world.open(tmp_path / "missing.env", name="other.safetensors")
    assert (envelope_world.out_dir / "opened.safetensors").read_bytes() == b"keep me"


def test_concurrent_opens_of_one_envelope_accept_it_once(envelope_world):
    sealed = envelope_world.seal()
    results: list[str] = []

    def attempt(i: int) -> None:
        try:
            envelope_world.open(sealed, name=f"o{i}.safetensors", replay=ReplayCache(envelope_world.replay.path))
            results.append("accept")
        except VerificationError as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["accept"] + ["replayed-nonce"] * 3
    assert len(envelope_world.outputs()) == 1
    assert verify_log(envelope_world.audit.path).lines == 4


def cli(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_round_trip_and_one_line_refusals(envelope_parties, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OF_PASS", "correct horse")
    coord, site, trust, out = tmp_path / "coord", tmp_path / "site", tmp_path / "trust", tmp_path / "out"
    assert cli(capsys, "keys", "new", "--name", "coordinator", "--out", coord, "--passphrase-env", "OF_PASS")[0] == 0
    assert cli(capsys, "keys", "new", "--name", "site", "--out", site)[0] == 0
    key_id = json.loads(cli(capsys, "keys", "show", site)[1])["key_id"]
    assert cli(capsys, "trust", "enrol", trust, site / "identity.json", "--expect-key-id", key_id)[0] == 0
    code, _, err = cli(capsys, "seal", "--organ", envelope_parties.organ, "--key", site, "--to", coord / "identity.json",
                       "--run", "r1", "--round", "2", "--nonce", "5" * 32, "--out", tmp_path / "e.env")
    assert code == 0, err
    common = ("--envelope", tmp_path / "e.env", "--key", coord, "--trust", trust, "--run", "r1")
    code, _, err = cli(capsys, "open", *common, "--round", "3", "--out", out / "a.safetensors", "--passphrase-env", "OF_PASS")
    assert code == 3 and err.count("\n") == 1 and "envelope refused (wrong-round)" in err
    code, _, err = cli(capsys, "open", *common, "--round", "2", "--expect-nonce", "6" * 32, "--out", out / "a.safetensors",
                       "--passphrase-env", "OF_PASS")
    assert code == 3 and err.count("\n") == 1 and "envelope refused (wrong-nonce)" in err
    code, _, err = cli(capsys, "open", *common, "--round", "2", "--out", out / "a.safetensors")
    assert code == 1 and err.count("\n") == 1 and "passphrase-protected" in err
    code, stdout, err = cli(capsys, "open", *common, "--round", "2", "--out", out / "a.safetensors",
                            "--passphrase-env", "OF_PASS", "--max-norm", "1e6", "--layers", "2:5", "--expect-nonce", "5" * 32)
    assert code == 0, err
    assert json.loads(stdout)["key_id"] == key_id
    assert (out / "a.safetensors").read_bytes() == envelope_parties.organ.read_bytes()
    code, stdout, _ = cli(capsys, "audit-log", "verify", coord / "audit.jsonl")
    assert code == 0 and json.loads(stdout)["lines"] == 3
    assert sorted(p.name for p in out.iterdir()) == ["a.safetensors"]


def test_replay_cache_survives_restarts_and_forgets_expired_nonces(tmp_path):
    cache = ReplayCache(tmp_path / "replay.jsonl")
    a, b = "a" * 16, "b" * 16
    cache.claim(a, "1" * 32, NOW + 100, now=NOW)
    cache.claim(b, "1" * 32, NOW + 100, now=NOW)  # same nonce, other sender: a different pair
    restarted = ReplayCache(tmp_path / "replay.jsonl")
    assert restarted.seen(a, "1" * 32, now=NOW) and not restarted.seen(a, "2" * 32, now=NOW)
    with pytest.raises(VerificationError) as info:
        restarted.claim(a, "1" * 32, NOW + 100, now=NOW)
    assert info.value.reason == "replayed-nonce"
    later = NOW + 100 + cache.skew + 1
    assert not cache.seen(a, "1" * 32, now=later)
    cache.claim(a, "3" * 32, later + 100, now=later)  # the expired entries outnumber the live: compacted
    assert len(cache.path.read_text().splitlines()) == 1


def test_replay_cache_fails_closed(tmp_path, envelope_world):
    cache = ReplayCache(tmp_path / "replay.jsonl")
    cache.claim("a" * 16, "1" * 32, NOW + 100, now=NOW)
    cache.path.write_text(cache.path.read_text() + '{"sender": "b')  # a torn append: ignored, then cut
    cache.claim("a" * 16, "2" * 32, NOW + 100, now=NOW)
    assert [json.loads(x)["nonce"] for x in cache.path.read_text().splitlines()] == ["1" * 32, "2" * 32]
    with pytest.raises(ReplayCacheError):
        cache.claim("not hex", "2" * 32, NOW + 100, now=NOW)
    cache.path.write_text("garbage\n" + cache.path.read_text())
    with pytest.raises(ReplayCacheError, match="line 1"):
        cache.seen("a" * 16, "1" * 32, now=NOW)
    with pytest.raises(ReplayCacheError):
        envelope_world.open(envelope_world.seal(), replay=cache)
    assert envelope_world.outputs() == []


def test_manifest_must_be_canonical_json(envelope_parties):
    binding = Binding.new("run-1", 0, ttl=60, now=NOW)
    with pytest.raises(EnvelopeError, match="canonical JSON"):
        seal_stream(io.BytesIO(b"x"), io.BytesIO(), sender=envelope_parties.site_a,
                    recipient=envelope_parties.coordinator.identity, binding=binding, payload_bytes=1,
                    manifest={"bad": float("nan")})
