"""Records: the unit of every demo corpus, and their deterministic train/validation split.

A record is one self-contained document (a clinical note, a module's source, a
help topic). Splits never share a record, so a record is a clean "member" or
"non-member" for a later privacy audit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from organfed.shared.errors import DataError

RECORD_SEPARATOR = "\n\n"
"""Between records in the plain-text form of a split (one blank line)."""


@dataclass(frozen=True)
class Record:
    """One document: a stable id (unique within its domain) and its text."""

    id: str
    text: str

    def __post_init__(self) -> None:
        if not self.id:
            raise DataError("record id is empty")
        if not self.text.strip():
            raise DataError(f"record {self.id!r} has no text")


@dataclass(frozen=True)
class Split:
    """The records of one domain, divided into disjoint train and validation lists."""

    train: tuple[Record, ...]
    val: tuple[Record, ...]


def split_records(
    records: Iterable[Record], *, salt: str, val_chars: int, train_chars: int | None = None
) -> Split:
    """Split records by a salted hash of their ids: the first ``val_chars`` go to validation.

    The order is a pure function of ids and salt, so the split does not depend on
    the order records were produced in. ``train_chars`` caps the training split
    (``None``: every remaining record). Both splits keep the hash order.
    """
    ranked = sorted(records, key=lambda r: hashlib.sha256(f"{salt}\0{r.id}".encode()).digest())
    if len({r.id for r in ranked}) != len(ranked):
        raise DataError(f"duplicate record ids in corpus {salt!r}")
    val: list[Record] = []
    train: list[Record] = []
    val_size = train_size = 0
    for record in ranked:
        if val_size < val_chars:
            val.append(record)
            val_size += len(record.text)
        elif train_chars is None or train_size < train_chars:
            train.append(record)
            train_size += len(record.text)
    if not val or not train:
        raise DataError(f"corpus {salt!r} has too little text for a train/validation split")
    return Split(train=tuple(train), val=tuple(val))


def records_to_jsonl(records: Sequence[Record]) -> bytes:
    """JSON lines, one ``{"id", "text"}`` object per record, UTF-8."""
    lines = (json.dumps({"id": r.id, "text": r.text}, ensure_ascii=False) for r in records)
    return "".join(line + "\n" for line in lines).encode("utf-8")


def records_to_text(records: Sequence[Record]) -> bytes:
    """Plain UTF-8 text: the records' texts separated by one blank line."""
    return (RECORD_SEPARATOR.join(r.text.strip("\n") for r in records) + "\n").encode("utf-8")


def read_records(path: Path) -> list[Record]:
    """Read a JSON-lines file written by :func:`records_to_jsonl`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read records from {path}: {exc}") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
            records.append(Record(id=obj["id"], text=obj["text"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}:{number}: not a record: {exc}") from exc
    return records
