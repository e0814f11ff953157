"""Atomic file writes: write to a temporary name beside the target, fsync, rename.

A reader never sees a partial file, and a crash leaves at most a stray
``.tmp-*`` file that :func:`atomic_path` callers may ignore.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to disk where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path | str, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path; on success fsync it, set ``mode`` and rename it onto ``target``.

    On any exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: Path | str, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target, mode=mode) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(target: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    write_bytes_atomic(target, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
