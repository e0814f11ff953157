"""Random mutations of valid envelopes: ``open`` never does anything but refuse with a VerificationError.

Quick by default. The long mode is run by hand, and its result recorded in
docs/envelope-format.md::

    ORGANFED_FUZZ_ITERATIONS=100000 ORGANFED_FUZZ_SEED=1 pytest -q -s tests/test_envelope_fuzz.py
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import time
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from organfed.shared.crypto import KEY_BLOCK_BYTES, TAG_BYTES
from organfed.shared.envelope_header import read_header
from organfed.shared.errors import VerificationError

ITERATIONS = int(os.environ.get("ORGANFED_FUZZ_ITERATIONS", "400"))
SEED = int(os.environ.get("ORGANFED_FUZZ_SEED", "0"))


def chunk_ranges(env: bytes) -> list[tuple[int, int]]:
    header = read_header(io.BytesIO(env))
    pos, ranges = len(header.prefix) + KEY_BLOCK_BYTES, []
    for i in range(header.num_chunks):
        ranges.append((pos, pos + header.chunk_plain_bytes(i) + TAG_BYTES))
        pos = ranges[-1][1]
    return ranges + [(pos, len(env))]


def rewrite_header(env: bytes, field: str, value: object) -> bytes:
    (length,) = struct.unpack(">I", env[10:14])
    doc = json.loads(env[14 : 14 + length])
    doc[field] = value
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return env[:10] + struct.pack(">I", len(body)) + body + env[14 + length :]


def mutators(rng: random.Random, a: bytes, b: bytes) -> list[Callable[[], bytes]]:
    def flip() -> bytes:
        data = bytearray(a)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)

    def overwrite() -> bytes:
        at, n = rng.randrange(len(a)), rng.randint(1, 8)
        return a[:at] + rng.randbytes(n) + a[at + n :]

    def cut_range() -> bytes:
        at = rng.randrange(len(a))
        return a[:at] + a[at + rng.randint(1, 5000) :]

    def insert() -> bytes:
        at = rng.randrange(len(a) + 1)
        return a[:at] + rng.randbytes(rng.randint(1, 64)) + a[at:]

    def duplicate() -> bytes:
        at, n = rng.randrange(len(a)), rng.randint(1, 5000)
        return a[:at] + a[at : at + n] + a[at:]

    def swap_chunks() -> bytes:
        ranges = chunk_ranges(a)[:-2]  # full-size chunks
        (s0, e0), (s1, e1) = sorted(rng.sample(ranges, 2))
        return a[:s0] + a[s1:e1] + a[e0:s1] + a[s0:e0] + a[e1:]

    def splice() -> bytes:
        at = rng.randrange(len(a))
        return a[:at] + b[at:]

    def graft_chunk() -> bytes:
        s, e = rng.choice(chunk_ranges(a))
        return a[:s] + b[s:e] + a[e:]

    def header_field() -> bytes:
        field = rng.choice(["sender", "recipient", "run", "round", "nonce", "created_at", "expires_at", "chunk_size",
                            "payload_bytes", "trailer_bytes", "suite", "format", "extra"])
        value = rng.choice([0, -1, 1, 2**31, 2**64, 1.5, None, True, "", "x" * 300, [], {}, "0" * 16, "0" * 32,
                            json.loads(b[14 : 14 + struct.unpack(">I", b[10:14])[0]]).get(field, 7)])
        return rewrite_header(a, field, value)

    def header_length() -> bytes:
        return a[:10] + struct.pack(">I", rng.choice([0, 1, rng.randrange(2**32), rng.randrange(1000)])) + a[14:]

    return [flip, flip, overwrite, lambda: a[: rng.randrange(len(a))], lambda: a + rng.randbytes(rng.randint(1, 64)),
            cut_range, insert, duplicate, swap_chunks, splice, graft_chunk, header_field, header_length]


def test_random_mutations_are_refused(envelope_world):
    rng = random.Random(SEED)
    a = envelope_world.seal(chunk_size=4096)
    b = envelope_world.seal(envelope_world.parties.site_b, chunk_size=4096)
    originals, ops = {a, b}, mutators(rng, a, b)
    reasons: Counter[str] = Counter()
    start = time.perf_counter()
    for iteration in range(ITERATIONS):
        mutated = rng.choice(ops)()
        if mutated in originals:
            reasons["(unchanged)"] += 1
            continue
        try:
            envelope_world.open(mutated, audit=None)
        except VerificationError as exc:
            reasons[exc.reason] += 1
        except Exception as exc:  # anything but the typed refusal is a bug: name the case to reproduce it
            raise AssertionError(f"seed {SEED} iteration {iteration}: {type(exc).__name__}: {exc}") from exc
        else:
            pytest.fail(f"seed {SEED} iteration {iteration}: a mutated envelope was accepted")
        assert envelope_world.outputs() == [], f"seed {SEED} iteration {iteration} left a file"
    elapsed = time.perf_counter() - start
    print(json.dumps({"iterations": ITERATIONS, "seed": SEED, "seconds": round(elapsed, 1),
                      "reasons": dict(reasons.most_common())}))
    assert sum(reasons.values()) == ITERATIONS
    assert envelope_world.open(a).path.exists()  # the unmutated envelope still opens


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["sender", "recipient", "run", "round", "nonce", "created_at", "expires_at",
                              "chunk_size", "payload_bytes", "trailer_bytes", "suite"]),
       value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                          max_leaves=6))
def test_any_header_value_is_refused(envelope_world, field, value):
    sealed = envelope_world.seal(chunk_size=4096)
    mutated = rewrite_header(sealed, field, value)
    if mutated == sealed:
        return
    with pytest.raises(VerificationError):
        envelope_world.open(mutated, audit=None)
    assert envelope_world.outputs() == []

