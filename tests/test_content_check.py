"""The streamed organ check: the same verdict however the bytes arrive, and every defect found on the way."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from organfed.shared.content_check import OrganStreamCheck, check_organ_file
from organfed.shared.errors import OrganContentError, OrganFormatError, PolicyError
from organfed.shared.organ import LayerRange, extract_organ, load_organ, make_organ, save_organ
from organfed.shared.policy import OrganPolicy


def feed(data: bytes, pieces: list[int] | int, policy: OrganPolicy | None = None, size: int | None = None):
    """Stream ``data`` through a check in pieces of the given sizes (cycled); return the check."""
    check = OrganStreamCheck(len(data) if size is None else size, policy)
    sizes = pieces if isinstance(pieces, list) else [pieces]
    pos, i = 0, 0
    while pos < len(data):
        step = sizes[i % len(sizes)]
        check.update(memoryview(bytearray(data[pos : pos + step])))
        pos, i = pos + step, i + 1
    return check


@pytest.fixture(scope="module")
def organ_files(tiny_models, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stream-organs")
    files = {}
    for family, model in tiny_models.items():
        extract_organ(model, root / f"{family}.safetensors", LayerRange(1, 3))
        files[family] = root / f"{family}.safetensors"
    organ = load_organ(files["llama"])
    half = {k: v.to(torch.bfloat16) for k, v in organ.tensors.items()}
    files["llama-bf16"] = save_organ(make_organ(half, organ.manifest), root / "llama-bf16.safetensors")
    return files


@pytest.mark.parametrize("name", ["gpt2", "llama", "gpt-oss", "llama-bf16"])
def test_any_split_of_the_bytes_gives_the_file_check_verdict(organ_files, name):
    path = organ_files[name]
    data = path.read_bytes()
    expected = check_organ_file(path)
    organ = load_organ(path)
    exact = math.sqrt(sum(float(t.double().square().sum()) for t in organ.tensors.values()))
    rng = random.Random(name)
    splits = [[1 << 20], [4096], [3, 4093, 1], [rng.randint(1, 9000) for _ in range(50)]]
    for pieces in splits:  # odd sizes split elements and tensor boundaries alike
        result = feed(data, pieces).result()
        assert result.manifest == expected.manifest == organ.manifest
        assert result.norm == pytest.approx(exact, rel=1e-5)


def test_truncated_extended_and_flipped_streams_are_refused(organ_files):
    data = organ_files["gpt2"].read_bytes()
    with pytest.raises(OrganFormatError, match=f"ended after {len(data) - 5} of its {len(data)} bytes"):
        feed(data[:-5], 777, size=len(data)).result()
    with pytest.raises(OrganFormatError, match="ended after 6 of"):
        feed(data[:6], 777, size=len(data)).result()  # inside the 8-byte length
    longer = feed(data + b"\0" * 3, 777, size=len(data))
    with pytest.raises(OrganFormatError, match="longer than"):
        longer.result()
    flipped = bytearray(data)
    flipped[-3] ^= 0x10
    with pytest.raises(OrganContentError, match="digest"):
        feed(bytes(flipped), 777).result()
    with pytest.raises(OrganFormatError, match="too short"):
        feed(b"\x01\x02", 1).result()
    with pytest.raises(OrganFormatError, match="pickle"):
        feed(b"\x80\x04" + data[2:], 777).result()


def test_the_first_defect_is_kept_and_later_bytes_are_ignored(organ_files):
    organ = load_organ(organ_files["gpt2"])
    tensors = {k: v.clone() for k, v in organ.tensors.items()}
    first, last = sorted(tensors)[0], sorted(tensors)[-1]
    tensors[first].view(-1)[0] = torch.nan
    tensors[last].view(-1)[-1] = torch.inf
    data = save_organ(make_organ(tensors, organ.manifest), organ_files["gpt2"].with_name("nan.safetensors")).read_bytes()
    check = feed(data, 1000)
    assert isinstance(check.error, OrganContentError) and repr(first) in str(check.error)
    with pytest.raises(OrganContentError, match=f"{first!r} holds NaN"):
        check.result()


def test_policy_is_applied_on_the_stream(organ_files):
    data = organ_files["llama"].read_bytes()
    manifest = load_organ(organ_files["llama"]).manifest
    norm = feed(data, 5000).result().norm
    assert feed(data, 5000, OrganPolicy.like(manifest, max_norm=norm * 1.01)).result().manifest == manifest
    for policy, needle in ((OrganPolicy(layers=(0, 2)), "layers"), (OrganPolicy.like(manifest, max_norm=norm * 0.99), "norm"),
                           (OrganPolicy(max_bytes=len(data) - 1), "bytes exceeds")):
        check = feed(data, 5000, policy)
        with pytest.raises(PolicyError, match=needle):
            check.result()


HOSTILE_VALUES = [None, True, -1, 0, 2**64, 1.5, "F32", "", ["F32"], [True], [-1, 4], [0, 2**70], {"a": 1}, [[0]]]


def test_hostile_headers_and_random_damage_end_only_in_typed_errors(organ_files, tmp_path):
    """What an unauthenticated envelope can feed the check before its signature is verified: every outcome is a
    recorded OrganFormatError (or acceptance of the unchanged organ), never another exception or a hang.
    load_organ, which parses the same header, gives the same kind of verdict."""
    import json
    import signal
    import struct

    data = organ_files["gpt2"].read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
    rng = random.Random(7)
    cases = [struct.pack("<Q", 0), struct.pack("<Q", 0) + b"{}", struct.pack("<Q", 2) + b"{}", b"\xff" * 16]
    harmless = {data}  # cases that still hold the same organ
    for _ in range(150):  # type confusion in the header's fields
        doc = json.loads(json.dumps(header))
        name = rng.choice([k for k in doc if k != "__metadata__"])
        field = rng.choice(["dtype", "shape", "data_offsets", "extra"])
        doc[name][field] = rng.choice(HOSTILE_VALUES)
        raw = json.dumps(doc).encode()
        cases.append(struct.pack("<Q", len(raw)) + raw + body)
        if doc == header:  # the value drawn was the one already there
            harmless.add(cases[-1])
    for _ in range(150):  # random bytes overwritten anywhere, most often in the header
        damaged = bytearray(data)
        at = rng.randrange(8 + n + 64) if rng.random() < 0.8 else rng.randrange(len(data))
        damaged[at : at + rng.randint(1, 8)] = rng.randbytes(rng.randint(1, 8))
        cases.append(bytes(damaged))
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the check hung"))
    signal.alarm(30)
    try:
        for case in cases:
            check = feed(case, rng.choice([1 << 20, 4096, 7, 1]) if len(case) < 2000 else [4096, 777])
            (tmp_path / "case.safetensors").write_bytes(case)
            for verdict in (check.result, lambda: load_organ(tmp_path / "case.safetensors")):
                try:
                    verdict()
                except OrganFormatError:
                    continue
                assert case in harmless
    finally:
        signal.alarm(0)
