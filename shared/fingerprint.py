"""Base-model fingerprints: a stable digest of a model's architecture and weights.

The digest covers the family's architecture numbers, layer count and types,
vocabulary size, and every tensor (name, dtype, shape, bytes) in name order,
read shard by shard in chunks. It does not depend on how the weights are split
into shards, on the transformers version, or on file names.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from organfed.shared.safetensors_io import hash_entry_header, iter_chunks

FINGERPRINT_VERSION = 1


def fingerprint_model_dir(path: Path | str) -> str:
    """``sha256:<hex>`` fingerprint of a model directory (cached per file identity, size and times)."""
    from organfed.shared.model_dir import shard_paths

    path = Path(path).resolve()
    return _fingerprint(path, tuple(_stamp(p) for p in [path / "config.json", *shard_paths(path)]))


def _stamp(path: Path) -> tuple:
    """What changes when a file is replaced or rewritten: inode, size, modification and change times."""
    st = path.stat()
    return path.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@functools.lru_cache(maxsize=32)
def _fingerprint(path: Path, stamp: tuple) -> str:
    from organfed.shared.model_dir import open_model_dir

    md = open_model_dir(path)
    hasher = hashlib.sha256()
    identity = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "model_type": md.config.model_type,
        "architecture": md.adapter.architecture(md.config),
        "num_layers": md.num_layers,
        "layer_types": md.adapter.layer_types(md.config),
        "vocab_size": getattr(md.config, "vocab_size", None),
    }
    hasher.update(json.dumps(identity, sort_keys=True).encode() + b"\n")
    entries = sorted(
        ((key, shard, entry) for shard in md.shards for key, entry in shard.entries.items()
         if not (md.layer_of(key) and md.layer_of(key)[1] in md.adapter.ignored_layer_keys)),
        key=lambda item: item[0],
    )
    for key, shard, entry in entries:
        hash_entry_header(hasher, key, entry.dtype, entry.shape)
        with open(shard.path, "rb") as fh:
            for piece in iter_chunks(fh, entry):
                hasher.update(piece)
    return "sha256:" + hasher.hexdigest()
