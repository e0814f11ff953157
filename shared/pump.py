"""Pipelined streaming: read ahead and write behind on helper threads while the caller works.

File reads and writes release the GIL, and so do hashlib and the AEAD on large
buffers, so with a spare core a file-to-file pass costs about its compute
alone. Memory is :data:`DEPTH` input and output buffers, whatever the stream's size.
Every :data:`WRITEBACK_BYTES` written to a real file, the writer asks the
kernel to start writing them back, so that the caller's final fsync is short.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

WRITEBACK_BYTES = 32 << 20
DEPTH = 4


class _Writer:
    """Writes to ``dst`` and hints early writeback of what it wrote (where the platform allows)."""

    def __init__(self, dst: BinaryIO) -> None:
        self._dst = dst
        try:
            self._fd: int | None = dst.fileno() if hasattr(os, "posix_fadvise") else None
            self._start = self._end = dst.tell()
        except (io.UnsupportedOperation, OSError):
            self._fd = None

    def __call__(self, data: memoryview) -> None:
        self._dst.write(data)
        if self._fd is None:
            return
        self._end += len(data)
        if self._end - self._start >= WRITEBACK_BYTES:
            self._dst.flush()
            os.posix_fadvise(self._fd, self._start, self._end - self._start, os.POSIX_FADV_DONTNEED)
            self._start = self._end


def pump(src: BinaryIO, dst: BinaryIO, *, count: int, size: Callable[[int], int], capacity: int,
         read: Callable[[BinaryIO, memoryview], None],
         work: Callable[[int, memoryview, bytearray], memoryview], depth: int = DEPTH) -> None:
    """For chunk ``i`` in ``range(count)``: ``read`` ``size(i)`` bytes from ``src``, let ``work(i, chunk, out)``
    fill ``out`` (``capacity`` bytes) and return the part to write to ``dst``.

    Up to ``depth`` chunks are read ahead and ``depth`` written behind while ``work``
    runs; ``size(0)`` must be the largest size. The first exception (from ``read``,
    ``work`` or a write) stops the pump and propagates.
    """
    if count <= 0:
        return
    inputs = [bytearray(size(0)) for _ in range(depth)]
    outputs = [bytearray(capacity) for _ in range(depth)]
    write = _Writer(dst)
    reads: deque[tuple[memoryview, Future]] = deque()
    writes: deque[Future] = deque()
    with ThreadPoolExecutor(1, "organfed-read") as reader, ThreadPoolExecutor(1, "organfed-write") as writer:

        def start_read(i: int) -> None:
            view = memoryview(inputs[i % depth])[: size(i)]
            reads.append((view, reader.submit(read, src, view)))

        for i in range(min(depth, count)):
            start_read(i)
        for i in range(count):
            chunk, pending = reads.popleft()
            pending.result()
            if len(writes) == depth:
                writes.popleft().result()  # chunk i - depth has left outputs[i % depth]
            writes.append(writer.submit(write, work(i, chunk, outputs[i % depth])))
            if i + depth < count:
                start_read(i + depth)  # chunk i has left inputs[i % depth]
        while writes:
            writes.popleft().result()
