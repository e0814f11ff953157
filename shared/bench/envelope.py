"""``organfed bench envelope``: seal and open throughput and peak memory, beside an in-memory floor.

Builds a GPT-2-shaped random model (hidden 2048: about 201 MB per layer in
float32) and extracts a 1-layer and a 6-layer organ (1.2 GB). Every step runs
in a fresh process, so its peak RSS is its own; each repetition runs all steps
in turn and the medians are reported, with the ratio to the floor taken within
each repetition (so that load from other jobs hits both sides alike). Each step
first reads its input once, untimed, so that it starts with the input in the
page cache, as a file just written or received would be.

* floor: SHA-256 and the AES-256-GCM STREAM of :class:`ChunkCipher` over the
  organ's bytes already in memory, same chunk size; for open, decryption then
  hashing. This is what the format costs with no I/O at all.
* seal / open: the envelope layer, file to file, fsync included; open decrypts
  to a temporary file, checks every chunk, the signature and the digest, renames.
  Both write around the page cache where the file system allows (``O_DIRECT``).
* open, output discarded: open writing to ``/dev/null``, the format's own cost.
* open + checks: the coordinator's whole path (trust, replay cache, audit log,
  the organ content checks and policy on the decrypted stream); it imports torch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from organfed.shared.bench.measure import mib, run_in_child
from organfed.shared.envelope import DEFAULT_CHUNK_SIZE

_PRELUDE = """
import hashlib, json, os, time
from pathlib import Path
W = Path({work!r}); ORGAN = Path({organ!r}); CHUNK = {chunk}
def clock():
    return time.perf_counter(), sum(os.times()[:2])
def since(mark):
    now = clock()
    return {{"seconds": now[0] - mark[0], "cpu_seconds": now[1] - mark[1]}}
def warm(path):
    # Untimed: read the input once, so every step starts as a file just written or received would (in the page cache).
    buffer = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buffer):
            pass
def done(**timings):
    hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    (W / "result.json").write_text(json.dumps(dict(timings=timings, peak_rss_bytes=hwm)))
"""

_FLOOR = """
from organfed.shared.crypto import ChunkCipher, TAG_BYTES
data = memoryview(ORGAN.read_bytes()); n = -(-len(data) // CHUNK)
cipher, out = ChunkCipher(os.urandom(32), os.urandom(32)), bytearray(CHUNK + TAG_BYTES)
mark = clock(); h = hashlib.sha256()
for i in range(n):
    chunk = data[i * CHUNK:(i + 1) * CHUNK]; h.update(chunk); cipher.seal_into(i, i == n - 1, chunk, out)
seal = since(mark)
sealed, pos = bytearray(len(data) + n * TAG_BYTES), 0
for i in range(n):
    v = cipher.seal_into(i, i == n - 1, data[i * CHUNK:(i + 1) * CHUNK], out); sealed[pos:pos + len(v)] = v; pos += len(v)
view, plain, pos = memoryview(sealed), bytearray(CHUNK), 0
mark = clock(); h = hashlib.sha256()
for i in range(n):
    size = min(CHUNK, len(data) - i * CHUNK) + TAG_BYTES
    h.update(cipher.open_into(i, i == n - 1, view[pos:pos + size], plain)); pos += size
done(seal=seal, open=since(mark))
"""

_SEAL = """
from organfed.shared.envelope import seal_file
from organfed.shared.envelope_header import Binding
from organfed.shared.identity import load_identity, load_key_dir
site, coord = load_key_dir(W / "site"), load_identity(W / "coordinator")
manifest = json.loads((W / (ORGAN.stem + ".manifest.json")).read_text())
warm(ORGAN)
mark = clock()
seal_file(ORGAN, W / "organ.env", sender=site, recipient=coord, manifest=manifest, chunk_size=CHUNK,
          binding=Binding.new("bench", 0, ttl=3600, now=time.time()))
done(step=since(mark))
"""

_OPEN = """
from organfed.shared.envelope import open_file
from organfed.shared.envelope_header import read_header
from organfed.shared.identity import load_identity, load_key_dir
coord, site = load_key_dir(W / "coordinator"), load_identity(W / "site")
warm(W / "organ.env")
mark = clock()
with open(W / "organ.env", "rb") as src:
    open_file(src, W / "opened.safetensors", read_header(src), key=coord, sender=site, check=lambda tmp, st: None)
done(step=since(mark))
"""

_OPEN_DISCARD = """
from organfed.shared.envelope import open_stream
from organfed.shared.envelope_header import read_header
from organfed.shared.identity import load_identity, load_key_dir
coord, site = load_key_dir(W / "coordinator"), load_identity(W / "site")
warm(W / "organ.env")
mark = clock()
with open(W / "organ.env", "rb") as src, open(os.devnull, "wb") as dst:
    open_stream(src, dst, read_header(src), key=coord, sender=site)
done(step=since(mark))
"""

_OPEN_FULL = """
from organfed.shared.audit_log import AuditLog
from organfed.shared.identity import TrustStore, load_key_dir
from organfed.shared.organ import read_manifest
from organfed.shared.policy import OrganPolicy
from organfed.shared.replay import ReplayCache
from organfed.shared.sealing import open_envelope
coord = load_key_dir(W / "coordinator")
policy = OrganPolicy.like(read_manifest(ORGAN), max_norm=1e12)
warm(W / "organ.env")
mark = clock()
open_envelope(W / "organ.env", key=coord, trust=TrustStore(W / "trust"), run_id="bench", round=0, policy=policy,
              replay=ReplayCache(W / "replay.jsonl"), audit=AuditLog(W / "audit.jsonl"), out=W / "opened.safetensors")
done(step=since(mark))
"""

_IMPORTS = "import organfed.shared.envelope, organfed.shared.identity\ndone()\n"
_IMPORTS_FULL = "import organfed.shared.sealing\ndone()\n"


FLOOR_OF = {"seal": "seal", "open": "open", "open, output discarded": "open"}
"""Which in-memory floor each step is compared with. Discarding the output shows the format's own
cost apart from the file system's write path."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("envelope", help="seal/open MB/s and peak RSS on a >= 1 GB organ, beside an in-memory floor")
    p.add_argument("--hidden", type=int, default=2048, help="hidden size of the GPT-2-shaped model (default 2048)")
    p.add_argument("--layers", type=int, default=6, help="layers of the large organ (default 6: 1.2 GB at hidden 2048)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("--workdir", type=Path, help="where to build (default: a temporary directory, removed afterwards)")
    p.set_defaults(run=run)


def _step(work: Path, organ: Path, chunk: int, body: str) -> tuple[dict, int]:
    """Run ``body`` in a fresh process; return its timings and its peak RSS.

    The peak is the child's ``VmHWM``: ``ru_maxrss`` of a child started by a
    large parent reports the parent's high-water mark (Linux keeps it across exec).
    """
    for name in ("opened.safetensors", "replay.jsonl", "audit.jsonl", "audit.jsonl.head"):
        (work / name).unlink(missing_ok=True)
    run_in_child(_PRELUDE.format(work=str(work), organ=str(organ), chunk=chunk) + body)
    result = json.loads((work / "result.json").read_text())
    return result["timings"], result["peak_rss_bytes"]


def _prepare(work: Path, hidden: int, layers: int) -> dict[str, Path]:
    from organfed.shared.identity import TrustStore, create_key_dir
    from organfed.shared.organ import LayerRange, extract_organ

    model = work / "model"
    run_in_child(f"from organfed.shared.tiny import write_tiny_model\nwrite_tiny_model('gpt2', {str(model)!r}, "
                 f"num_layers={layers}, hidden={hidden})\n")
    organs = {"large": work / "large.safetensors", "small": work / "small.safetensors"}
    for name, layer_range in (("large", LayerRange(0, layers)), ("small", LayerRange(0, 1))):
        manifest = extract_organ(model, organs[name], layer_range)
        (work / f"{name}.manifest.json").write_text(manifest.to_json())
    shutil.rmtree(model)
    site, coord = create_key_dir(work / "site", "site"), create_key_dir(work / "coordinator", "coordinator")
    TrustStore(work / "trust").enrol(site.identity)
    return organs


def measure(work: Path, organ: Path, chunk: int, repeats: int) -> dict[str, dict[str, float]]:
    """Medians over ``repeats`` of MB/s, CPU seconds per GB, peak RSS (MiB) and the ratio to the floor."""
    gb = organ.stat().st_size / 1e9
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(repeats):
        floor, floor_rss = _step(work, organ, chunk, _FLOOR)
        for name, body in (("seal", _SEAL), ("open", _OPEN), ("open, output discarded", _OPEN_DISCARD),
                           ("open + checks", _OPEN_FULL)):
            if name == "open + checks":
                _step(work, organ, chunk, _SEAL)  # a fresh envelope: the last one's nonce is spent
            timings, rss = _step(work, organ, chunk, body)
            step = timings["step"]
            row = {"mb_per_s": 1000 * gb / step["seconds"], "cpu_s_per_gb": step["cpu_seconds"] / gb,
                   "peak_rss_mib": mib(rss)}
            base = FLOOR_OF.get(name)
            if base is not None:
                row |= {"floor_mb_per_s": 1000 * gb / floor[base]["seconds"],
                        "floor_cpu_s_per_gb": floor[base]["cpu_seconds"] / gb,
                        "ratio_to_floor": floor[base]["seconds"] / step["seconds"]}
            runs.setdefault(name, []).append(row)
        runs.setdefault("floor (in memory)", []).append({"peak_rss_mib": mib(floor_rss)})
    for name, body in (("imports only (envelope)", _IMPORTS), ("imports only (+ torch, checks)", _IMPORTS_FULL)):
        runs[name] = [{"peak_rss_mib": mib(_step(work, organ, chunk, body)[1])}]
    return {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in runs.items()}


def run(args: argparse.Namespace) -> int:
    work = args.workdir or Path(tempfile.mkdtemp(prefix="organfed-bench-envelope-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        organs = _prepare(work, args.hidden, args.layers)
        results = {size: measure(work, path, args.chunk_size, args.repeats) for size, path in organs.items()}
        sizes = {size: path.stat().st_size for size, path in organs.items()}
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"organs: large {sizes['large'] / 1e9:.2f} GB, small {sizes['small'] / 1e9:.2f} GB; chunk {args.chunk_size} B; "
          f"median of {args.repeats} runs; MB = 10^6 bytes\n")
    columns = ("mb_per_s", "floor_mb_per_s", "ratio_to_floor", "cpu_s_per_gb", "floor_cpu_s_per_gb", "peak_rss_mib")
    print("| organ | step | MB/s | floor MB/s | ratio to floor | CPU s/GB | floor CPU s/GB | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size, steps in results.items():
        for name, row in steps.items():
            cells = [f"{row[k]:.2f}" if k in row and row[k] < 10 else f"{row[k]:.0f}" if k in row else "" for k in columns]
            print(f"| {size} | {name} | " + " | ".join(cells) + " |")
    print()
    print(json.dumps({"sizes": sizes, "chunk_size": args.chunk_size, "repeats": args.repeats, "results": results}))
    return 0
