"""A checked reader and a streaming writer for the safetensors format.

organfed parses safetensors headers itself so that it can refuse a hostile file
(oversized or malformed header, overlapping or out-of-file offsets) before any
tensor is read, and so that it can copy tensors byte for byte between files
without holding a model in memory. The layout is the public safetensors one:
8 bytes of little-endian header length, a JSON header, then the tensor data.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from organfed.shared.errors import OrganFormatError

MAX_HEADER_BYTES = 100 * 1024 * 1024
COPY_CHUNK = 8 * 1024 * 1024

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}

_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in a safetensors file (``start``/``end`` are absolute file offsets)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed, checked header of one safetensors file."""

    path: Path
    entries: dict[str, TensorEntry]
    metadata: dict[str, str]
    file_size: int


def dtype_size(dtype: str) -> int:
    return torch.empty((), dtype=DTYPES[dtype]).element_size()


def _refuse_non_safetensors(path: Path, head: bytes) -> None:
    if head.startswith(_PICKLE_MAGIC) or path.suffix in {".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt"}:
        raise OrganFormatError(
            f"{path} is not a safetensors file (it looks like a PyTorch pickle): organfed never "
            "unpickles files, because loading a pickle can run arbitrary code; convert it to "
            "safetensors on a machine that trusts it"
        )


def header_length(path: Path, head: bytes, size: int, *, max_header_bytes: int = MAX_HEADER_BYTES) -> int:
    """The JSON header's length, from the first 8 bytes (``head``) of a file of ``size`` bytes; checked."""
    _refuse_non_safetensors(path, head)
    if len(head) < 8:
        raise OrganFormatError(f"{path}: too short to be a safetensors file ({size} bytes)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > max_header_bytes:
        raise OrganFormatError(f"{path}: header of {n} bytes exceeds the {max_header_bytes}-byte limit")
    if n > size - 8:
        raise OrganFormatError(f"{path}: header length {n} runs past the end of the file (truncated?)")
    return n


def read_header(path: Path | str, *, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Parse and check the header of ``path``; raise :class:`OrganFormatError` on anything malformed."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            n = header_length(path, fh.read(8), size, max_header_bytes=max_header_bytes)
            raw = fh.read(n)
    except OSError as exc:
        raise OrganFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_header(path, raw, size)


def parse_header(path: Path, raw: bytes, size: int) -> SafetensorsHeader:
    """Check the JSON header ``raw`` of a safetensors file of ``size`` bytes (``path`` names it in errors)."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise OrganFormatError(f"{path}: header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise OrganFormatError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise OrganFormatError(f"{path}: __metadata__ must map strings to strings")
    data_start = 8 + len(raw)
    entries = {name: _parse_entry(path, name, spec, data_start) for name, spec in header.items()}
    _check_layout(path, entries, data_start, size)
    return SafetensorsHeader(path=path, entries=entries, metadata=metadata, file_size=size)


def _parse_entry(path: Path, name: str, spec: object, data_start: int) -> TensorEntry:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise OrganFormatError(f"{path}: tensor {name!r} has a malformed header entry")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise OrganFormatError(f"{path}: tensor {name!r} has unsupported dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise OrganFormatError(f"{path}: tensor {name!r} has a malformed shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise OrganFormatError(f"{path}: tensor {name!r} has malformed data offsets {offsets!r}")
    entry = TensorEntry(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])
    if entry.nbytes != entry.numel * dtype_size(dtype):
        raise OrganFormatError(
            f"{path}: tensor {name!r} spans {entry.nbytes} bytes but {dtype}{list(shape)} needs "
            f"{entry.numel * dtype_size(dtype)}"
        )
    return entry


def _check_layout(path: Path, entries: dict[str, TensorEntry], data_start: int, size: int) -> None:
    cursor = data_start
    for entry in sorted(entries.values(), key=lambda e: (e.start, e.end)):
        if entry.start != cursor:
            raise OrganFormatError(f"{path}: tensor {entry.name!r} overlaps another or leaves a gap")
        cursor = entry.end
    if cursor != size:
        raise OrganFormatError(
            f"{path}: tensor data ends at byte {cursor} but the file has {size} bytes (truncated or extended)"
        )


def check_name_order(header: SafetensorsHeader) -> None:
    """Refuse a file whose tensor bytes are not stored in name order (organs are, so one pass can check them)."""
    entries = header.entries
    if sorted(entries, key=lambda n: (entries[n].start, n)) != sorted(entries):
        raise OrganFormatError(f"{header.path}: tensor data is not stored in name order (organs are, so that one pass checks them)")


def read_tensor(fh: BinaryIO, entry: TensorEntry) -> torch.Tensor:
    """Read one tensor (a fresh, writable CPU tensor) from an open file."""
    buf = bytearray(entry.nbytes)
    fh.seek(entry.start)
    if fh.readinto(buf) != entry.nbytes:
        raise OrganFormatError(f"tensor {entry.name!r}: file ended early")
    if entry.nbytes == 0:
        return torch.empty(entry.shape, dtype=DTYPES[entry.dtype])
    return torch.frombuffer(buf, dtype=DTYPES[entry.dtype]).reshape(entry.shape)


def iter_chunks(fh: BinaryIO, entry: TensorEntry, chunk: int = COPY_CHUNK) -> Iterator[bytes]:
    """Yield the raw bytes of one tensor in chunks of at most ``chunk`` bytes."""
    fh.seek(entry.start)
    left = entry.nbytes
    while left:
        piece = fh.read(min(chunk, left))
        if not piece:
            raise OrganFormatError(f"tensor {entry.name!r}: file ended early")
        left -= len(piece)
        yield piece


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The little-endian bytes of a tensor, as safetensors stores them."""
    t = tensor.detach().to("cpu").contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def hash_entry_header(hasher: "hashlib._Hash", name: str, dtype: str, shape: Iterable[int]) -> None:
    """Feed a tensor's name, dtype and shape into ``hasher`` (so bytes cannot be reinterpreted)."""
    hasher.update(json.dumps([name, dtype, list(shape)]).encode() + b"\n")


@dataclass(frozen=True)
class TensorSpec:
    """What the writer needs to lay out one tensor before its bytes arrive."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * dtype_size(self.dtype)


class StreamingWriter:
    """Write a safetensors file tensor by tensor, in the order of ``specs``.

    The header is written first from the specs, so memory stays at one chunk
    whatever the file's size. Use inside :func:`organfed.shared.atomic.atomic_path`.
    """

    def __init__(self, fh: BinaryIO, specs: list[TensorSpec], metadata: dict[str, str]) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("duplicate tensor names")
        header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
        offset = 0
        for spec in specs:
            header[spec.name] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        fh.write(struct.pack("<Q", len(raw)) + raw)
        self._fh = fh
        self._pending = list(reversed(specs))

    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        """Write the bytes of the next tensor, which must be ``name``."""
        spec = self._pending.pop()
        if spec.name != name:
            raise ValueError(f"expected tensor {spec.name!r}, got {name!r}")
        written = 0
        for piece in chunks:
            self._fh.write(piece)
            written += len(piece)
        if written != spec.nbytes:
            raise ValueError(f"tensor {name!r}: wrote {written} bytes, expected {spec.nbytes}")

    def write_tensor(self, name: str, tensor: torch.Tensor) -> None:
        self.write(name, [tensor_bytes(tensor)])

    def close(self) -> None:
        if self._pending:
            raise ValueError(f"{len(self._pending)} tensors were never written")
