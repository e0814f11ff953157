"""The pipelined pump: every chunk read, worked, written and tapped in order; the first error stops it."""

from __future__ import annotations

import io
import os

import pytest

from organfed.shared.pump import pump


def read_exact(src, view):
    assert src.readinto(view) == len(view)


def run(data: bytes, chunk: int, *, tap=None, work=None, depth=3) -> bytes:
    count = -(-len(data) // chunk)
    dst = io.BytesIO()

    def upper(i, piece, out):  # a stand-in for the cipher: a different output of the same length
        out[: len(piece)] = bytes(b ^ 0xFF for b in piece)
        return out[: len(piece)]

    pump(io.BytesIO(data), dst, count=count, size=lambda i: min(chunk, len(data) - i * chunk), capacity=chunk,
         read=read_exact, work=work or upper, depth=depth, tap=tap)
    return dst.getvalue()


@pytest.mark.parametrize("size", [1, 999, 1000, 1001, 10_000])
def test_tap_sees_what_is_written_chunk_by_chunk(size):
    data = os.urandom(size)
    seen: list[bytes] = []
    written = run(data, 1000, tap=lambda view: seen.append(bytes(view)))
    assert written == bytes(b ^ 0xFF for b in data)
    assert b"".join(seen) == written and all(len(s) <= 1000 for s in seen)


def test_an_error_in_the_tap_or_the_work_stops_the_pump():
    def tap(view):
        raise ValueError("tap refuses")

    with pytest.raises(ValueError, match="tap refuses"):
        run(os.urandom(5000), 1000, tap=tap)

    def work(i, piece, out):
        if i == 2:
            raise KeyError("work refuses")
        return out[: len(piece)]

    with pytest.raises(KeyError, match="work refuses"):
        run(os.urandom(5000), 1000, work=work)
