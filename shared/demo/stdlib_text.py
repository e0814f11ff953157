"""Python's own text, read from this interpreter's standard library: the general and code corpora.

Nothing is downloaded and no stdlib module is imported except ``pydoc_data.topics``
(pure data) and ``builtins`` (always loaded). Source files are parsed with
:mod:`ast`, never executed. Files are visited in sorted order, so the output is
a pure function of the Python build. All of it is under the PSF licence.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import os
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from organfed.shared.demo.records import Record
from organfed.shared.errors import DataError

SKIPPED_DIRS = frozenset({
    "__pycache__", "__phello__", "site-packages", "dist-packages", "lib-dynload",
    "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
})
"""Directories left out: third-party code, test suites and parts some distributions split off."""

CODE_FILE_CHARS = (2_000, 40_000)
"""Size range of a source file that may go to the code corpus (no stubs, no giants)."""

_COMMENT_LINE = re.compile(r"^[ \t]*#+ ?(.*)$")


@dataclass(frozen=True)
class SourceFile:
    """One ``.py`` file of the standard library: its path relative to the stdlib root, and text."""

    rel: str
    text: str


def stdlib_root() -> Path:
    """The directory of this interpreter's pure-Python standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    if not (root / "os.py").is_file():
        raise DataError(f"no Python standard library at {root}")
    return root


def stdlib_sources(root: Path) -> list[SourceFile]:
    """Every UTF-8 ``.py`` file under ``root`` outside :data:`SKIPPED_DIRS`, sorted by path."""
    sources = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("config-"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath, name)
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            sources.append(SourceFile(rel=path.relative_to(root).as_posix(), text=text))
    return sources


def partition(sources: list[SourceFile], *, code_chars: int) -> tuple[list[SourceFile], list[SourceFile]]:
    """Split files into (general, code): code takes mid-sized files in salted-hash order up to ``code_chars``.

    No file contributes to both corpora, so the code domain is unseen by the base model.
    """
    low, high = CODE_FILE_CHARS
    ranked = sorted(
        (s for s in sources if low <= len(s.text) <= high),
        key=lambda s: hashlib.sha256(f"code\0{s.rel}".encode()).digest(),
    )
    code: set[str] = set()
    size = 0
    for source in ranked:
        if size >= code_chars:
            break
        code.add(source.rel)
        size += len(source.text)
    return [s for s in sources if s.rel not in code], [s for s in sources if s.rel in code]


def module_prose(source: SourceFile) -> str:
    """The English in a module: its docstrings and comment blocks, in source order."""
    try:
        tree = ast.parse(source.text)
    except SyntaxError:
        return ""
    pieces: list[tuple[int, str]] = []
    in_strings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.end_lineno:
            in_strings.update(range(node.lineno, node.end_lineno + 1))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                pieces.append((getattr(node, "lineno", 0), doc.strip()))
    pieces.extend(_comment_blocks(source.text, in_strings))
    return "\n\n".join(text for _, text in sorted(pieces))


def _comment_blocks(text: str, skip: set[int]) -> Iterator[tuple[int, str]]:
    """Runs of full-line comments that read as prose (enough words, mostly letters)."""
    block: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines() + [""], start=1):
        match = None if number in skip else _COMMENT_LINE.match(line)
        if match and not line.lstrip().startswith("#!"):
            if not block:
                start = number
            block.append(match.group(1).rstrip())
            continue
        if block and _is_prose("\n".join(block)):
            yield start, "\n".join(block).strip()
        block = []


def _is_prose(text: str) -> bool:
    letters = sum(c.isalpha() for c in text)
    visible = sum(not c.isspace() for c in text)
    return len(text.split()) >= 5 and letters >= 0.75 * visible and "coding:" not in text


def general_records(sources: list[SourceFile], root: Path) -> list[Record]:
    """The general corpus: module prose, the bundled help topics, builtins' docs and the licence."""
    from pydoc_data.topics import topics  # bundled documentation, pure data

    records = [Record(f"module:{s.rel}", prose) for s in sources if (prose := module_prose(s)).strip()]
    records += [Record(f"topic:{name}", topics[name].strip()) for name in sorted(topics) if topics[name].strip()]
    records.append(Record("builtins", _builtins_docs()))
    licence = root / "LICENSE.txt"
    if licence.is_file():
        records.append(Record("licence:LICENSE.txt", licence.read_text(encoding="utf-8").strip()))
    return records


def code_records(sources: list[SourceFile]) -> list[Record]:
    """The code corpus: each held-out module's full source is one record."""
    return [Record(f"source:{s.rel}", s.text) for s in sources]


def _builtins_docs() -> str:
    """Docstrings of the built-in functions and types and of the types' public methods, by name."""
    docs = [builtins.__doc__ or ""]
    for name, obj in inspect.getmembers(builtins):
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isbuiltin(obj)):
            continue
        docs.append(inspect.cleandoc(obj.__doc__ or ""))
        if inspect.isclass(obj):
            docs += [inspect.cleandoc(m.__doc__ or "") for n, m in sorted(vars(obj).items()) if not n.startswith("_")]
    return "\n\n".join(d for d in docs if d.strip())
