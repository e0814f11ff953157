"""Pipelined streaming: read ahead and write behind on helper threads while the caller works.

File reads and writes release the GIL, and so do hashlib, torch and the AEAD on
large buffers, so with a spare core a file-to-file pass costs about its compute
alone. An optional tap sees each output chunk on a thread of its own, beside the
write (the coordinator checks an organ's content there as it is decrypted).
Memory is :data:`DEPTH` input and output buffers, whatever the stream's size;
output buffers are page-aligned, so that a :class:`~organfed.shared.direct_io.DirectFile`
writes them without a copy.
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

from organfed.shared.direct_io import aligned_buffer

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
         work: Callable[[int, memoryview, memoryview], memoryview], depth: int = DEPTH,
         tap: Callable[[memoryview], None] | None = None) -> None:
    """For chunk ``i`` in ``range(count)``: ``read`` ``size(i)`` bytes from ``src``, let ``work(i, chunk, out)``
    fill ``out`` (``capacity`` bytes) and return the part to write to ``dst`` (and to give ``tap``).

    Up to ``depth`` chunks are read ahead and ``depth`` written (and tapped) behind
    while ``work`` runs; ``size(0)`` must be the largest size. The first exception
    (from ``read``, ``work``, a write or ``tap``) stops the pump and propagates.
    """
    if count <= 0:
        return
    inputs = [bytearray(size(0)) for _ in range(depth)]
    outputs = [aligned_buffer(capacity) for _ in range(depth)]
    write = _Writer(dst)
    reads: deque[tuple[memoryview, Future]] = deque()
    writes: deque[list[Future]] = deque()
    with (ThreadPoolExecutor(1, "organfed-read") as reader, ThreadPoolExecutor(1, "organfed-write") as writer,
          ThreadPoolExecutor(1, "organfed-tap") as tapper):

        def start_read(i: int) -> None:
            view = memoryview(inputs[i % depth])[: size(i)]
            reads.append((view, reader.submit(read, src, view)))

        for i in range(min(depth, count)):
            start_read(i)
        for i in range(count):
            chunk, pending = reads.popleft()
            pending.result()
            if len(writes) == depth:
                for pending_write in writes.popleft():
                    pending_write.result()  # chunk i - depth has left outputs[i % depth]
            out = work(i, chunk, outputs[i % depth])
            writes.append([writer.submit(write, out)] + ([tapper.submit(tap, out)] if tap is not None else []))
            if i + depth < count:
                start_read(i + depth)  # chunk i has left inputs[i % depth]
        while writes:
            for pending_write in writes.popleft():
                pending_write.result()
