"""The organ content check, streamed: every check of ``load_organ`` plus a policy, on bytes as they arrive.

:class:`OrganStreamCheck` takes an organ file's bytes in order, in pieces of any
size (the envelope hands it each chunk as it is decrypted), and holds no more
than the file's header whatever the organ's size. As the bytes arrive it
parses the safetensors header and layout (tensors must lie in name order, so
that one pass suffices), hashes each tensor's name, dtype, shape and bytes into
the tensor digest and measures the organ's norm: the L2 norm of all its
parameters together (float32 accumulation within a piece, float64 across pieces
and on overflow), noting NaN and inf. Its verdict then adds the manifest, the
policy and :func:`~organfed.shared.organ_rules.check_entries`, the checks of
:func:`~organfed.shared.organ.load_organ`. :func:`check_organ_file` runs it over a file.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch

from organfed.shared.errors import OrganContentError, OrganFormatError
from organfed.shared.manifest import Manifest
from organfed.shared.organ_rules import MAX_ORGAN_HEADER_BYTES, check_entries, manifest_of
from organfed.shared.policy import OrganPolicy
from organfed.shared.safetensors_io import (
    DTYPES, SafetensorsHeader, TensorEntry, check_name_order, hash_entry_header, header_length, parse_header,
)

CHECK_CHUNK = 1 << 20


@dataclass(frozen=True)
class OrganCheck:
    """What a passed check learnt: the manifest and the organ's L2 norm."""

    manifest: Manifest
    norm: float


def _squared_norm(values: torch.Tensor, path: Path, name: str) -> float:
    """Sum of squares of ``values`` (float32 accumulation, float64 if that overflows); refuses NaN and inf."""
    norm = float(torch.linalg.vector_norm(values, dtype=torch.float32 if values.element_size() <= 4 else None))
    if not math.isfinite(norm):
        if not torch.isfinite(values).all():
            raise OrganContentError(f"{path}: tensor {name!r} holds NaN or infinite values")
        norm = float(torch.linalg.vector_norm(values.double()))
    return norm * norm


class OrganStreamCheck:
    """Check an organ of ``size`` bytes fed in order through :meth:`update`; :meth:`result` gives the verdict.

    While the bytes arrive (for an envelope: authenticated chunk by chunk, but not yet
    signature-checked) it does only what any safetensors reader does: it parses the
    header and layout, then hashes and measures the tensor bytes. The manifest, the
    policy and the family's tensor list are checked in :meth:`result`, which an envelope
    calls only after the signature and digest have passed. ``update`` never raises for a
    defect in the organ: it records the first one in :attr:`error` and ignores the bytes
    after it. ``label`` names the organ in error messages.
    """

    def __init__(self, size: int, policy: OrganPolicy | None = None, *, label: Path | str = "organ") -> None:
        self._size, self._policy, self._path = size, policy, Path(label)
        self._pos = 0  # bytes received
        self._head = bytearray()  # the 8-byte length, then the JSON header, until parsed
        self._head_bytes = 8
        self._length_read = False
        self._header: SafetensorsHeader | None = None
        self._todo: deque[TensorEntry] = deque()  # tensors still to come, in file (= name) order
        self._in_tensor = False
        self._dtype: torch.dtype | None = None  # of the tensor being read; None: not a float, not measured
        self._carry = bytearray()  # the start of an element split between two pieces
        self._hasher, self._squares = hashlib.sha256(), 0.0
        self.error: OrganFormatError | None = None
        if size < 8:
            self._guarded(header_length, self._path, b"", size)  # too short

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the organ."""
        if self.error is None:
            self._guarded(self._take, memoryview(data).cast("B"))

    def result(self) -> OrganCheck:
        """The manifest and norm of an organ that arrived whole and passed; otherwise raise its first defect.

        In this order: the file's structure, the manifest, the policy on it and the tensor list, then the
        values (NaN, inf), the digest, and the policy's norm.
        """
        if self.error is None and (self._header is None or self._pos < self._size):
            self.error = OrganFormatError(f"{self._path}: ended after {self._pos} of its {self._size} bytes")
        if self.error is not None and not isinstance(self.error, OrganContentError):
            raise self.error
        manifest = manifest_of(self._header)
        if self._policy is not None:
            self._policy.check_size(self._size)
            self._policy.check_manifest(manifest)
        check_entries(self._header, manifest)
        if self.error is not None:
            raise self.error
        digest = "sha256:" + self._hasher.hexdigest()
        if digest != manifest.tensor_digest:
            raise OrganContentError(f"{self._path}: tensor digest {digest} does not match the manifest's {manifest.tensor_digest}")
        norm = math.sqrt(self._squares)
        if self._policy is not None:
            self._policy.check_norm(norm)
        return OrganCheck(manifest, norm)

    def _guarded(self, step, *args) -> None:
        try:
            step(*args)
        except OrganFormatError as exc:
            self.error = exc

    def _take(self, data: memoryview) -> None:
        if self._pos + len(data) > self._size:
            raise OrganFormatError(f"{self._path}: longer than the {self._size} bytes announced")
        while self._header is None and data:
            take = min(len(data), self._head_bytes - len(self._head))
            self._head += data[:take]
            self._pos, data = self._pos + take, data[take:]
            if len(self._head) < self._head_bytes:
                return  # all taken; the header goes on in the next piece
            if not self._length_read:
                self._head_bytes += header_length(self._path, bytes(self._head), self._size,
                                                  max_header_bytes=MAX_ORGAN_HEADER_BYTES)
                self._length_read = True
            if len(self._head) == self._head_bytes:
                header = parse_header(self._path, bytes(self._head[8:]), self._size)
                check_name_order(header)
                self._todo.extend(sorted(header.entries.values(), key=lambda e: (e.start, e.name)))
                self._head, self._header = bytearray(), header
        if self._header is not None:
            self._take_tensors(data)

    def _take_tensors(self, data: memoryview) -> None:
        while self._todo:
            entry = self._todo[0]
            if not self._in_tensor:
                hash_entry_header(self._hasher, entry.name, entry.dtype, entry.shape)
                dtype = DTYPES[entry.dtype]
                self._dtype, self._in_tensor = (dtype if dtype.is_floating_point else None), True
            take = min(len(data), entry.end - self._pos)
            if take:
                self._hasher.update(data[:take])
                if self._dtype is not None:
                    self._measure(data[:take], entry.name)
                self._pos, data = self._pos + take, data[take:]
            if self._pos < entry.end:
                return
            self._todo.popleft()
            self._in_tensor = False

    def _measure(self, piece: memoryview, name: str) -> None:
        item = self._dtype.itemsize
        if self._carry:
            need = item - len(self._carry)
            self._carry += piece[:need]
            piece = piece[need:]
            if len(self._carry) < item:
                return
            self._squares += _squared_norm(torch.frombuffer(self._carry, dtype=self._dtype), self._path, name)
            self._carry = bytearray()
        whole = len(piece) - len(piece) % item
        if whole:
            values = piece[:whole] if not piece.readonly else bytearray(piece[:whole])
            self._squares += _squared_norm(torch.frombuffer(values, dtype=self._dtype), self._path, name)
        self._carry += piece[whole:]


def check_organ_file(path: Path | str, policy: OrganPolicy | None = None, *, chunk: int = CHECK_CHUNK) -> OrganCheck:
    """Validate an organ file as ``load_organ`` does, plus ``policy``, in memory independent of its size.

    Raises :class:`OrganFormatError` / :class:`OrganContentError` for a defective
    organ and :class:`PolicyError` for one outside the policy.
    """
    path = Path(path)
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    try:
        with open(path, "rb") as fh:
            check = OrganStreamCheck(os.fstat(fh.fileno()).st_size, policy, label=path)
            while check.error is None and (n := fh.readinto(buffer)):
                check.update(view[:n])
    except OSError as exc:
        raise OrganFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return check.result()
