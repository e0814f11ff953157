"""Identities: key directories, passphrases, file modes, tampered files, and the trust directory."""

from __future__ import annotations

import json
import stat

import pytest

from organfed.shared.cli.main import build_parser, main
from organfed.shared.crypto import PublicKeys, export_private_keys, generate_keys, import_private_keys
from organfed.shared.errors import IdentityError, VerificationError
from organfed.shared.identity import (
    IDENTITY_FILE, PRIVATE_FILE, Identity, TrustStore, create_key_dir, key_id_of, load_identity, load_key_dir,
    read_passphrase,
)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_key_dir_layout_and_modes(tmp_path):
    key_dir = create_key_dir(tmp_path / "k", "hospital-a")
    assert mode(tmp_path / "k") == 0o700 and mode(tmp_path / "k" / PRIVATE_FILE) == 0o600
    assert mode(tmp_path / "k" / IDENTITY_FILE) == 0o644
    identity = key_dir.identity
    assert len(identity.key_id) == 16 and identity.key_id == key_id_of(identity.keys)
    assert load_identity(tmp_path / "k") == identity == load_identity(tmp_path / "k" / IDENTITY_FILE)
    loaded = load_key_dir(tmp_path / "k")
    assert loaded.identity == identity and loaded.keys.public == identity.keys
    assert "redacted" in repr(loaded.keys) and "PrivateKeys(<redacted>)" not in repr(loaded)
    with pytest.raises(IdentityError, match="already holds keys"):
        create_key_dir(tmp_path / "k", "again")


def test_passphrase_protection(tmp_path):
    create_key_dir(tmp_path / "k", "coordinator", passphrase=b"correct horse")
    private = (tmp_path / "k" / PRIVATE_FILE).read_text()
    assert json.loads(private)["protection"] == "scrypt-aes256gcm" and "PRIVATE KEY" not in private
    assert load_key_dir(tmp_path / "k", passphrase=b"correct horse").identity.name == "coordinator"
    with pytest.raises(IdentityError, match="passphrase-protected"):
        load_key_dir(tmp_path / "k")
    with pytest.raises(IdentityError, match="wrong passphrase"):
        load_key_dir(tmp_path / "k", passphrase=b"battery staple")


def test_private_key_files_are_checked(tmp_path):
    create_key_dir(tmp_path / "k", "site")
    private = tmp_path / "k" / PRIVATE_FILE
    private.chmod(0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_key_dir(tmp_path / "k")
    private.chmod(0o600)
    doc = json.loads(private.read_text())
    for broken in ({**doc, "keys": "!!"}, {**doc, "format": "other"}, {**doc, "protection": "rot13"}, [1, 2]):
        with pytest.raises(IdentityError):
            import_private_keys(broken, None)
    sealed = export_private_keys(generate_keys(), b"pw", scrypt_log_n=10)
    with pytest.raises(IdentityError, match="key-derivation"):
        import_private_keys({**sealed, "kdf": {**sealed["kdf"], "log_n": 30}}, b"pw")
    assert import_private_keys(sealed, b"pw").public is not None


def test_tampered_identity_files_are_refused(tmp_path):
    a, b = create_key_dir(tmp_path / "a", "site-a"), create_key_dir(tmp_path / "b", "site-b")
    doc = a.identity.to_json()
    doc["encryption_key"] = b.identity.to_json()["encryption_key"]  # swap the key an attacker wants used
    (tmp_path / "swapped.json").write_text(json.dumps(doc))
    with pytest.raises(IdentityError, match="does not match its keys"):
        load_identity(tmp_path / "swapped.json")
    (tmp_path / "a" / IDENTITY_FILE).write_text(json.dumps(b.identity.to_json()))
    with pytest.raises(IdentityError, match="do not match"):
        load_key_dir(tmp_path / "a")
    for bad in ("not json", json.dumps({"format": "organfed-identity", "version": 1})):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(IdentityError):
            load_identity(tmp_path / "bad.json")
    with pytest.raises(IdentityError):
        Identity(name="../etc", keys=a.identity.keys)
    with pytest.raises(IdentityError):
        PublicKeys(b"short", b"x" * 32)


def test_read_passphrase(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("s3cret\nignored\n")
    assert read_passphrase(file=tmp_path / "pw") == b"s3cret"
    monkeypatch.setenv("OF_PASS", "from env")
    assert read_passphrase(env="OF_PASS") == b"from env"
    assert read_passphrase() is None
    (tmp_path / "empty").write_text("")
    for kwargs in ({"file": tmp_path / "empty"}, {"env": "OF_UNSET_VARIABLE"}, {"file": tmp_path / "nope"},
                   {"file": tmp_path / "pw", "env": "OF_PASS"}):
        with pytest.raises(IdentityError):
            read_passphrase(**kwargs)


def test_trust_store_enrol_lookup_revoke(tmp_path):
    a, b = create_key_dir(tmp_path / "a", "site-a"), create_key_dir(tmp_path / "b", "site-b")
    trust = TrustStore(tmp_path / "trust")
    with pytest.raises(VerificationError) as info:
        trust.lookup(a.identity.key_id)
    assert info.value.reason == "unknown-sender"
    trust.enrol(a.identity)
    trust.enrol(a.identity)  # idempotent
    trust.enrol(b.identity)
    assert trust.lookup(a.identity.key_id) == a.identity
    impostor = create_key_dir(tmp_path / "c", "site-a")
    with pytest.raises(IdentityError, match="already enrolled"):
        trust.enrol(impostor.identity)
    for hostile in ("../../etc/passwd", "", "A" * 16, a.identity.key_id + "0"):
        with pytest.raises(VerificationError) as info:
            trust.lookup(hostile)
        assert info.value.reason == "unknown-sender"
    trust.revoke(b.identity.key_id, "laptop stolen")
    with pytest.raises(VerificationError) as info:
        trust.lookup(b.identity.key_id)
    assert info.value.reason == "revoked-sender"
    with pytest.raises(IdentityError, match="revoked"):
        trust.enrol(b.identity)
    with pytest.raises(IdentityError, match="not enrolled"):
        trust.revoke("0" * 16, "typo")
    assert [(i.name, r.reason if r else None) for i, r in trust.entries()] == [("site-a", None), ("site-b", "laptop stolen")]


def test_cli_keys_and_trust(tmp_path, capsys):
    assert main(["keys", "new", "--name", "site-a", "--out", str(tmp_path / "a")]) == 0
    key_id = json.loads(capsys.readouterr().out)["key_id"]
    assert main(["keys", "show", str(tmp_path / "a")]) == 0
    assert json.loads(capsys.readouterr().out)["key_id"] == key_id
    trust = str(tmp_path / "trust")
    assert main(["trust", "enrol", trust, str(tmp_path / "a"), "--expect-key-id", "0" * 16]) == 1
    assert "not 0000000000000000" in capsys.readouterr().err
    assert main(["trust", "enrol", trust, str(tmp_path / "a" / "identity.json"), "--expect-key-id", key_id]) == 0
    assert main(["trust", "revoke", trust, key_id, "--reason", "test"]) == 0
    capsys.readouterr()
    assert main(["trust", "list", trust]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "site-a", "key_id": key_id, "status": "revoked", "reason": "test"}


def test_passphrase_is_never_a_command_line_value():
    with pytest.raises(SystemExit):
        build_parser("keys").parse_args(["keys", "new", "--name", "x", "--out", "d", "--passphrase", "secret"])
