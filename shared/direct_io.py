"""Writing a large file around the page cache (``O_DIRECT``), where the file system allows it.

A buffered write costs the kernel a copy into the page cache and the work of
writing it back; for a multi-GB envelope or organ that kernel time rivals the
encryption itself. :class:`DirectFile` stages writes in a page-aligned buffer
and hands whole aligned blocks to the disk directly; the unaligned tail is
padded, written and cut off again with ``ftruncate``. Where ``O_DIRECT`` is
missing or refused (tmpfs, some network file systems, other platforms) it
writes through the page cache instead: same bytes, only slower.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from pathlib import Path

ALIGN = 4096
"""Block alignment of direct writes (a multiple of every common logical block size)."""
STAGING_BYTES = 4 << 20


class DirectFile:
    """A write-only binary file (``write``, ``tell``, ``fileno``, ``close``); all bytes are in the file after :meth:`close`."""

    def __init__(self, path: Path | str, *, staging_bytes: int = STAGING_BYTES) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        direct = getattr(os, "O_DIRECT", 0)
        try:
            self._fd = os.open(path, flags | direct, 0o600)
            self.direct = bool(direct)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._fd, self.direct = os.open(path, flags, 0o600), False
        self._buffer = mmap.mmap(-1, staging_bytes)  # page-aligned, as direct I/O requires
        self._view = memoryview(self._buffer)
        self._fill = 0
        self._size = 0

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        """Hand staged bytes to the kernel when writing through the page cache; direct writes wait for whole blocks."""
        if not self.direct and self._fill:
            self._write_all(self._view[: self._fill])
            self._fill = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        data = memoryview(data).cast("B")
        if self.direct and not self._fill and _aligned(data):
            self._write_all(data)  # already page-aligned (for example a buffer from aligned_buffer): no copy
            self._size += len(data)
            return len(data)
        done = 0
        while done < len(data):
            take = min(len(data) - done, len(self._buffer) - self._fill)
            self._view[self._fill : self._fill + take] = data[done : done + take]
            self._fill += take
            done += take
            if self._fill == len(self._buffer):
                self._write_all(self._view[: self._fill])
                self._fill = 0
        self._size += done
        return done

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._fill:
                pad = -self._fill % ALIGN if self.direct else 0
                self._view[self._fill : self._fill + pad] = bytes(pad)
                self._write_all(self._view[: self._fill + pad])
                if pad:
                    os.ftruncate(self._fd, self._size)
        finally:
            os.close(self._fd)
            self._fd = -1
            self._view.release()
            self._buffer.close()

    def __enter__(self) -> DirectFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_all(self, view: memoryview) -> None:
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self._go_buffered()  # accepted at open, refused on write: fall back, same bytes
                continue
            view = view[written:]
            if self.direct and written % ALIGN:
                self._go_buffered()  # a short, unaligned write: the rest cannot go direct

    def _go_buffered(self) -> None:
        import fcntl  # POSIX only, like O_DIRECT itself: only reached where direct writes were on

        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        self.direct = False


def aligned_buffer(size: int) -> memoryview:
    """A writable, page-aligned buffer of ``size`` bytes, which :meth:`DirectFile.write` writes without a copy."""
    raw = bytearray(size + ALIGN)  # heap memory: cheaper than a fresh mapping for the small buffers of small files
    start = -ctypes.addressof(ctypes.c_char.from_buffer(raw)) % ALIGN
    return memoryview(raw)[start : start + size]  # the export pins the bytearray: its address cannot change


def _aligned(view: memoryview) -> bool:
    if view.readonly or len(view) % ALIGN or not len(view):
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) % ALIGN == 0
