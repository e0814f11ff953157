"""Token streams packed into fixed-size blocks, with a deterministic train/validation split.

Text is read and tokenized a piece at a time (:func:`organfed.shared.data.iter_pieces`)
and the token ids go straight to an anonymous temporary file of ``uint32``, so a
corpus never has to fit in memory; blocks are rows of a read-only memory map of
that file. Documents are joined with the end-of-text token and cut into blocks
of ``block_size`` tokens; the tail shorter than a block is dropped.

Block ``i`` goes to validation when a hash of ``(split_seed, i)`` falls below the
validation fraction, so the split is a pure function of the block index: it can
be decided while streaming and does not change when the corpus grows at its end.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from organfed.shared.data import iter_pieces, iter_token_ids, text_files
from organfed.shared.errors import ConfigError, DataError

TOKEN_DTYPE = np.dtype("<u4")
DIGEST_OF = "sha256 of the token ids as uint32 little-endian, in corpus order, before packing into blocks"
_FLUSH_TOKENS = 1 << 20


@dataclass(frozen=True)
class DataStats:
    """Counts and a digest of a corpus: enough to recognise it, nothing of its content."""

    files: int
    documents: int
    tokens: int
    blocks: int
    train_blocks: int
    val_blocks: int
    dropped_tokens: int
    block_size: int
    split_seed: int
    val_fraction: float
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "digest_of": DIGEST_OF}


@dataclass(frozen=True)
class BlockData:
    """Packed blocks (a read-only ``(blocks, block_size)`` array) and the split's block indices."""

    blocks: np.ndarray
    train: np.ndarray
    val: np.ndarray
    stats: DataStats

    def batch(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """The blocks ``indices`` as a ``(len(indices), block_size)`` tensor of token ids."""
        return torch.from_numpy(self.blocks[np.asarray(indices, dtype=np.int64)].astype(np.int64))


def split_hash(indices: np.ndarray, seed: int) -> np.ndarray:
    """A uniform value in [0, 1) per block index (splitmix64 of seed and index)."""
    with np.errstate(over="ignore"):
        x = np.asarray(indices, dtype=np.uint64) + np.uint64(seed % 2**64) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def split_blocks(num_blocks: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation block indices; each side non-empty when ``val_fraction`` > 0."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    index = np.arange(num_blocks, dtype=np.int64)
    if val_fraction == 0.0:
        return index, index[:0]
    if num_blocks < 2:
        raise DataError(f"the data makes {num_blocks} block(s); a train/validation split needs at least 2 (or val_fraction 0)")
    h = split_hash(index, seed)
    is_val = h < val_fraction
    if not is_val.any():
        is_val[np.argmin(h)] = True
    if is_val.all():
        is_val[np.argmax(h)] = False
    return index[~is_val], index[is_val]


def prepare_blocks(
    tokenizer: PreTrainedTokenizerBase,
    paths: Sequence[Path | str],
    *,
    block_size: int,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    cache_dir: Path | str | None = None,
) -> BlockData:
    """Tokenize ``paths`` with ``tokenizer`` and pack them into blocks, streaming.

    ``cache_dir`` (created if missing) is where the anonymous token file lives
    (default: the system's temporary directory); the file has no name and
    vanishes when the returned data is garbage-collected.
    Raises :class:`DataError` for empty, binary or non-UTF-8 input and for data
    too small for one block (or for a split, when ``val_fraction`` > 0).
    """
    if block_size < 2:
        raise ConfigError(f"block_size must be at least 2, got {block_size}")
    files = text_files(paths)
    hasher = hashlib.sha256()
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    fh = tempfile.TemporaryFile(prefix="organfed-tokens-", dir=cache_dir)
    buffer: list[int] = []
    tokens = documents = 0

    def flush() -> None:
        nonlocal tokens
        array = np.asarray(buffer, dtype=TOKEN_DTYPE)
        data = array.tobytes()
        hasher.update(data)
        fh.write(data)
        tokens += len(buffer)
        buffer.clear()

    for ids, ends in iter_token_ids(tokenizer, iter_pieces(files)):
        buffer += ids
        documents += ends
        if len(buffer) >= _FLUSH_TOKENS:
            flush()
    flush()
    fh.flush()
    num_blocks = tokens // block_size
    if num_blocks == 0:
        fh.close()
        raise DataError(f"the data holds {tokens} tokens, too small for one block of {block_size}; add text or lower the block size")
    blocks = np.memmap(fh, dtype=TOKEN_DTYPE, mode="r", shape=(num_blocks, block_size))
    fh.close()  # the memory map keeps its own handle on the (already unlinked) file
    train, val = split_blocks(num_blocks, val_fraction, split_seed)
    stats = DataStats(
        files=len(files),
        documents=documents,
        tokens=tokens,
        blocks=num_blocks,
        train_blocks=len(train),
        val_blocks=len(val),
        dropped_tokens=tokens - num_blocks * block_size,
        block_size=block_size,
        split_seed=split_seed,
        val_fraction=val_fraction,
        digest="sha256:" + hasher.hexdigest(),
    )
    return BlockData(blocks, train, val, stats)


def epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """A permutation of ``range(num_items)`` that depends only on ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(num_items, generator=generator).numpy()


class BatchOrder:
    """Which blocks micro-batch ``m`` holds when shuffled epochs of ``train`` are read back to back.

    A pure function of ``(train, batch_size, seed, m)``, so the data cursor of a
    run is just its micro-batch count; the current epoch's permutation is cached.
    """

    def __init__(self, train: np.ndarray, batch_size: int, seed: int) -> None:
        if len(train) == 0:
            raise DataError("no training blocks")
        self.train, self.batch_size, self.seed = train, batch_size, seed
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_order(len(self.train), self.seed, epoch)
        return self._order

    def __call__(self, micro_batch: int) -> np.ndarray:
        positions = np.arange(micro_batch * self.batch_size, (micro_batch + 1) * self.batch_size)
        epochs, offsets = np.divmod(positions, len(self.train))
        return np.asarray(
            [self.train[self._permutation(int(e))[o]] for e, o in zip(epochs, offsets)], dtype=np.int64
        )
