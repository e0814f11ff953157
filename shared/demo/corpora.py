"""The demo corpora: one general corpus and one domain corpus per demo site, built once and cached.

``general``  English prose of this Python install (docstrings, comments, bundled help, licence); the base
             model is pretrained on its train split and forgetting is measured on its validation split.
``clinical`` synthetic clinical notes (hospital site), see :mod:`organfed.shared.demo.clinical`.
``code``     Python source of standard-library modules held out of ``general`` (software firm site).
``finance``  synthetic finance documents (bank or accounting firm site), see :mod:`organfed.shared.demo.finance`.

Each split is written twice: ``<split>.txt`` (records separated by a blank line) and ``<split>.jsonl``
(one ``{"id", "text"}`` record per line). The output is a pure function of the Python build: seeded
generators, sorted file walks, salted-hash splits.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tqdm import tqdm

from organfed.shared.demo import stdlib_text
from organfed.shared.demo.clinical import clinical_records
from organfed.shared.demo.finance import finance_records
from organfed.shared.demo.records import (
    Record,
    Split,
    read_records,
    records_to_jsonl,
    records_to_text,
    split_records,
)
from organfed.shared.errors import DataError

CORPORA_VERSION = 1
"""Bump when any builder's output changes; cached corpora of another version are rebuilt."""
MANIFEST = "manifest.json"
SEED = 20_250_306
TRAIN_CHARS = 1_500_000
"""Target size of each site domain's train split (about 1.5 MB of text)."""
VAL_CHARS = 150_000
"""Target size of every validation split."""


class Domain(StrEnum):
    """The corpora: one general, and one per demo site."""

    GENERAL = "general"
    CLINICAL = "clinical"
    CODE = "code"
    FINANCE = "finance"


SITE_DOMAINS = (Domain.CLINICAL, Domain.CODE, Domain.FINANCE)


@dataclass(frozen=True)
class SplitFiles:
    """One split of one domain: the plain text and the same records as JSON lines."""

    text: Path
    records: Path


@dataclass(frozen=True)
class DomainFiles:
    """The train and validation files of one domain."""

    domain: Domain
    train: SplitFiles
    val: SplitFiles


@dataclass(frozen=True)
class DemoCorpora:
    """The built corpora: their directory, content digest and files per domain."""

    root: Path
    digest: str
    domains: tuple[DomainFiles, ...]

    def __getitem__(self, domain: Domain | str) -> DomainFiles:
        for files in self.domains:
            if files.domain == domain:
                return files
        raise DataError(f"no demo corpus named {domain!r}; known: {', '.join(Domain)}")

    @property
    def sites(self) -> tuple[DomainFiles, ...]:
        """The site domains, in :data:`SITE_DOMAINS` order."""
        return tuple(self[d] for d in SITE_DOMAINS)


def build_demo_corpora(out_dir: Path, *, progress: bool = True) -> DemoCorpora:
    """Build every corpus under ``out_dir``, or do nothing if a verified build is already there."""
    out_dir = Path(out_dir)
    cached = _verified(out_dir)
    if cached is not None:
        return cached
    steps = ("standard library", "general", "code", "clinical", "finance", "write")
    with tqdm(total=len(steps), desc="demo corpora", unit="step", disable=not progress) as bar:
        bar.set_postfix_str(steps[0])
        root = stdlib_text.stdlib_root()
        sources = stdlib_text.stdlib_sources(root)
        general_src, code_src = stdlib_text.partition(sources, code_chars=TRAIN_CHARS + VAL_CHARS + 50_000)
        bar.update()
        splits: dict[Domain, Split] = {}
        for domain, make in (
            (Domain.GENERAL, lambda: stdlib_text.general_records(general_src, root)),
            (Domain.CODE, lambda: stdlib_text.code_records(code_src)),
            (Domain.CLINICAL, lambda: clinical_records(chars=TRAIN_CHARS + VAL_CHARS, seed=SEED)),
            (Domain.FINANCE, lambda: finance_records(chars=TRAIN_CHARS + VAL_CHARS, seed=SEED + 1)),
        ):
            bar.set_postfix_str(domain.value)
            cap = None if domain is Domain.GENERAL else TRAIN_CHARS
            splits[domain] = split_records(make(), salt=domain.value, val_chars=VAL_CHARS, train_chars=cap)
            bar.update()
        bar.set_postfix_str("write")
        _write(out_dir, splits)
        bar.update()
    built = _verified(out_dir)
    if built is None:
        raise DataError(f"demo corpora in {out_dir} failed verification right after writing")
    return built


def _layout(root: Path, domain: Domain) -> DomainFiles:
    def split(name: str) -> SplitFiles:
        return SplitFiles(root / domain.value / f"{name}.txt", root / domain.value / f"{name}.jsonl")

    return DomainFiles(domain, split("train"), split("val"))


def _write(out_dir: Path, splits: dict[Domain, Split]) -> None:
    """Write every file atomically, the manifest last, so a manifest means a complete build."""
    (out_dir / MANIFEST).unlink(missing_ok=True)
    files: dict[str, dict[str, object]] = {}
    for domain, split in splits.items():
        layout = _layout(out_dir, domain)
        for records, target in ((split.train, layout.train), (split.val, layout.val)):
            for path, data in ((target.text, records_to_text(records)), (target.records, records_to_jsonl(records))):
                _atomic_write(path, data)
                files[path.relative_to(out_dir).as_posix()] = {
                    "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "records": len(records)}
    manifest = {"format": "organfed-demo-corpora", "version": CORPORA_VERSION, "digest": _digest(files),
                "python": platform.python_version(), "files": dict(sorted(files.items()))}
    _atomic_write(out_dir / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def _verified(out_dir: Path) -> DemoCorpora | None:
    """The corpora in ``out_dir`` if its manifest is current and every file matches it, else ``None``."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("version") != CORPORA_VERSION or manifest.get("digest") != _digest(files):
            return None
        domains = tuple(_layout(out_dir, d) for d in Domain)
        expected = {p.relative_to(out_dir).as_posix() for d in domains
                    for s in (d.train, d.val) for p in (s.text, s.records)}
        if set(files) != expected:
            return None
        for rel, entry in files.items():
            if hashlib.sha256((out_dir / rel).read_bytes()).hexdigest() != entry["sha256"]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return DemoCorpora(root=out_dir, digest=manifest["digest"], domains=domains)


def _digest(files: dict[str, dict[str, object]]) -> str:
    """One hash over every file's path and content hash."""
    lines = "".join(f"{rel} {files[rel]['sha256']}\n" for rel in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same directory, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_split(corpora: DemoCorpora, domain: Domain | str, split: str) -> list[Record]:
    """The records of one split (``"train"`` or ``"val"``) of one domain."""
    files = corpora[domain]
    if split not in ("train", "val"):
        raise DataError(f"split must be 'train' or 'val', not {split!r}")
    return read_records(getattr(files, split).records)
