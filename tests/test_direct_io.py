"""DirectFile: the same bytes as a plain write, direct or not, for every size around the block boundaries."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from organfed.shared.direct_io import ALIGN, DirectFile, aligned_buffer

SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, 3 * ALIGN + 17, (1 << 16) + 5]


def write_pieces(path: Path, data: bytes, piece: int, **kwargs) -> DirectFile:
    with DirectFile(path, **kwargs) as out:
        for i in range(0, len(data), piece):
            out.write(memoryview(data)[i : i + piece])
        assert out.tell() == len(data)
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("piece", [1000, 1 << 20])
def test_bytes_written_are_the_bytes_given(tmp_path, size, piece):
    data = os.urandom(size)
    write_pieces(tmp_path / "f", data, piece, staging_bytes=4 * ALIGN)  # a small staging buffer: many refills
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform")
@pytest.mark.parametrize("refused_at", ["open", "write"])
def test_a_file_system_that_refuses_direct_io_gets_the_same_bytes(tmp_path, monkeypatch, refused_at):
    """Like tmpfs on Linux (refused at open) or some network file systems (refused on the first write)."""
    real_open, real_write = os.open, os.write
    direct_fds: set[int] = set()

    def fake_open(path, flags, *args):
        if flags & os.O_DIRECT and refused_at == "open":
            raise OSError(errno.EINVAL, "Invalid argument")
        fd = real_open(path, flags, *args)
        if flags & os.O_DIRECT:
            direct_fds.add(fd)
        return fd

    def fake_write(fd, data):
        if fd in direct_fds and refused_at == "write" and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)
    data = os.urandom(5 * ALIGN + 3)
    out = write_pieces(tmp_path / "f", data, 777, staging_bytes=2 * ALIGN)
    assert not out.direct
    assert (tmp_path / "f").read_bytes() == data


def test_a_file_on_disk_is_written_direct_where_the_platform_allows(tmp_path):
    out = write_pieces(tmp_path / "f", os.urandom(ALIGN * 3 + 1), ALIGN)
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform")
    probe = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)  # does this file system take it?
    os.close(probe)
    assert out.direct


@pytest.mark.parametrize("order", ["aligned-first", "unaligned-first"])
def test_aligned_buffers_go_straight_to_the_file_and_mix_with_others(tmp_path, order):
    """Page-aligned whole blocks skip the staging buffer only while nothing is staged: the bytes stay in order."""
    aligned = aligned_buffer(2 * ALIGN)
    aligned[:] = os.urandom(2 * ALIGN)
    odd = os.urandom(ALIGN + 5)
    pieces = [memoryview(aligned), odd, memoryview(aligned)[:ALIGN], memoryview(aligned)]
    if order == "unaligned-first":
        pieces = pieces[1:] + pieces[:1]
    with DirectFile(tmp_path / "f", staging_bytes=4 * ALIGN) as out:
        for piece in pieces:
            out.write(piece)
    assert (tmp_path / "f").read_bytes() == b"".join(bytes(p) for p in pieces)
