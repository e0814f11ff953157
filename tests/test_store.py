"""The organ store: content addressing, records that survive restarts, corruption and lock refusals."""

from __future__ import annotations

import pytest

from organfed.server.store import Accepted, OrganStore, RunState, StoreError
from organfed.shared.errors import ConfigError
from organfed.shared.organ import LayerRange, extract_organ


@pytest.fixture(scope="module")
def organ_file(tiny_models, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "organ.safetensors"
    extract_organ(tiny_models["gpt2"], path, LayerRange(2, 5))
    return path


def test_put_is_content_addressed_and_idempotent(organ_file, tmp_path):
    store = OrganStore(tmp_path)
    digest = store.put(organ_file)
    assert store.put(organ_file) == digest
    assert len(list((tmp_path / "objects").rglob("*.safetensors"))) == 1
    assert store.load(digest).manifest.source_layers == (2, 5)


def test_records_and_state_survive_a_new_store_object(organ_file, tmp_path):
    store = OrganStore(tmp_path)
    digest = store.put(organ_file)
    store.record_accepted("run-1", 1, Accepted("site-a", "a", digest, 1234, {"loss": 2.5}))
    store.save_state(RunState("run-1", completed_rounds=1, current=digest))
    again = OrganStore(tmp_path)
    assert again.accepted("run-1", 1) == [Accepted("site-a", "a", digest, 1234, {"loss": 2.5})]
    assert again.state("run-1").completed_rounds == 1 and again.state("run-1").current == digest
    assert again.accepted("run-1", 2) == [] and again.state("other").completed_rounds == 0


def test_a_record_never_names_a_missing_object(tmp_path):
    with pytest.raises(StoreError, match="not stored"):
        OrganStore(tmp_path).record_accepted("run-1", 1, Accepted("a", "a", "0" * 64, 1))


def test_corrupt_object_is_refused(organ_file, tmp_path):
    store = OrganStore(tmp_path)
    digest = store.put(organ_file)
    path = store.object_path(digest)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(StoreError, match="corrupt"):
        store.load(digest)


def test_unsafe_names_are_refused(tmp_path):
    store = OrganStore(tmp_path)
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ConfigError):
            store.run_dir(bad)
    with pytest.raises(StoreError, match="malformed"):
        store.object_path("../../etc/passwd")


def test_one_coordinator_per_run(tmp_path):
    store = OrganStore(tmp_path)
    with store.lock("run-1"):
        with pytest.raises(StoreError, match="another coordinator"):
            with OrganStore(tmp_path).lock("run-1"):
                pass
    with store.lock("run-1"):
        pass


def test_a_damaged_object_is_repaired_by_the_next_put(organ_file, tmp_path):
    store = OrganStore(tmp_path)
    digest = store.put(organ_file)
    store.object_path(digest).write_bytes(b"damaged")
    assert store.put(organ_file) == digest
    assert store.load(digest).manifest.source_layers == (2, 5)
