"""The hash-chained audit log: verify finds every edit, reorder, insertion and deletion; appends recover from crashes."""

from __future__ import annotations

import json
import threading

import pytest

from organfed.shared.audit_log import GENESIS, AuditLog, parse_anchor, verify_log
from organfed.shared.cli.main import main
from organfed.shared.errors import AuditLogError


def fill(log: AuditLog, n: int, detail: str = "entry") -> list[str]:
    return [log.append(decision="accept" if i % 2 else "refuse", reason="ok" if i % 2 else "corrupt",
                       sender=f"{i:016x}", run="run-1", round=i, digest=None, detail=f"{detail} {i}", now=1.8e9 + i)
            for i in range(n)]


@pytest.fixture
def log(tmp_path) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    fill(log, 5)
    return log


def lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def write(log: AuditLog, parts: list[bytes]) -> None:
    log.path.write_bytes(b"".join(parts))


def test_chain_and_head(log):
    report = verify_log(log.path)
    records = [json.loads(line) for line in lines(log)]
    assert report.lines == 5 and [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == GENESIS and records[0]["decision"] == "refuse"
    assert set(records[0]) == {"seq", "prev", "time", "sender", "run", "round", "digest", "decision", "reason", "detail"}
    assert json.loads((log.path.parent / "audit.jsonl.head").read_text()) == {"lines": 5, "head": report.head}


@pytest.mark.parametrize("index", [0, 2, 4])
def test_an_edited_line_is_found(log, index):
    parts = lines(log)
    parts[index] = parts[index].replace(b'"run":"run-1"', b'"run":"run-2"')
    write(log, parts)
    with pytest.raises(AuditLogError, match=f"line {index + 2 if index < 4 else 5}"):
        verify_log(log.path)


def test_reordered_inserted_and_deleted_lines_are_found(log):
    original = lines(log)
    for parts in (
        [original[1], original[0], *original[2:]],  # swapped
        [*original[:2], original[1], *original[2:]],  # duplicated
        [*original[:2], *original[3:]],  # middle deleted
        original[1:],  # first deleted
        original[:-1],  # last deleted
        original[:-2],  # two last deleted
    ):
        write(log, parts)
        with pytest.raises(AuditLogError):
            verify_log(log.path)


def test_missing_head_or_extra_lines_are_found(log, tmp_path):
    head = log.path.parent / "audit.jsonl.head"
    saved = head.read_bytes()
    head.unlink()
    with pytest.raises(AuditLogError, match="missing"):
        verify_log(log.path)
    with pytest.raises(AuditLogError, match="missing"):
        fill(log, 1)
    head.write_bytes(saved)
    fill(AuditLog(tmp_path / "elsewhere.jsonl"), 0)
    extra = AuditLog(log.path)
    extra.append(decision="accept", reason="ok", sender=None, run=None, round=None, digest=None)
    head.write_bytes(saved)  # as if the head update was lost: one line not covered
    with pytest.raises(AuditLogError, match="not covered by the head"):
        verify_log(log.path)


def test_append_recovers_from_a_crash_and_refuses_a_tampered_log(log):
    head = log.path.parent / "audit.jsonl.head"
    saved = head.read_bytes()
    log.append(decision="accept", reason="ok", sender=None, run=None, round=None, digest=None)
    head.write_bytes(saved)  # crash between the line and its head update
    log.path.write_bytes(log.path.read_bytes() + b'{"seq":7,"pr')  # and a torn line of a second append
    with pytest.raises(AuditLogError, match="incomplete"):
        verify_log(log.path)
    fill(log, 1)
    assert verify_log(log.path).lines == 7
    parts = lines(log)
    write(log, parts[:3] + parts[4:])
    with pytest.raises(AuditLogError, match="verify"):
        fill(log, 1)


def test_anchor_pins_history_against_a_consistent_rewrite(log, tmp_path):
    report = verify_log(log.path)
    anchor = parse_anchor(f"{report.lines}:{report.head}")
    fill(log, 2)
    assert verify_log(log.path, anchor=anchor).lines == 7
    forged = AuditLog(tmp_path / "forged.jsonl")  # an attacker rewrites both files consistently
    fill(forged, 7, detail="forged")
    log.path.write_bytes(forged.path.read_bytes())
    (log.path.parent / "audit.jsonl.head").write_bytes((tmp_path / "forged.jsonl.head").read_bytes())
    assert verify_log(log.path).lines == 7
    with pytest.raises(AuditLogError, match="anchor"):
        verify_log(log.path, anchor=anchor)
    with pytest.raises(AuditLogError):
        parse_anchor("5:md5:abc")


def test_concurrent_appends_keep_one_chain(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    threads = [threading.Thread(target=fill, args=(AuditLog(log.path), 10)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify_log(log.path).lines == 40


def test_cli_verify(log, capsys):
    assert main(["audit-log", "verify", str(log.path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["lines"] == 5
    assert main(["audit-log", "verify", str(log.path), "--anchor", out["anchor"]]) == 0
    capsys.readouterr()
    write(log, lines(log)[:-1])
    assert main(["audit-log", "verify", str(log.path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lines deleted from the end" in err
