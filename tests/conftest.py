"""Shared fixtures: tiny random-init models of every family, built locally (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from organfed.shared.tiny import FAMILIES, write_tiny_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny 6-layer model directory per family: ``{"gpt2": path, "llama": path, "gpt-oss": path}``."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: write_tiny_model(family, root / family, seed=1) for family in FAMILIES}


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


# --- Sealed envelopes: parties, an organ, and a coordinator's state (test_envelope*.py, test_policy.py) ---

from dataclasses import dataclass  # noqa: E402

from organfed.shared.audit_log import AuditLog  # noqa: E402
from organfed.shared.identity import KeyDir, TrustStore, create_key_dir  # noqa: E402
from organfed.shared.organ import LayerRange, extract_organ  # noqa: E402
from organfed.shared.replay import ReplayCache  # noqa: E402
from organfed.shared.sealing import OpenedOrgan, open_envelope, seal_organ  # noqa: E402


@dataclass(frozen=True)
class EnvelopeParties:
    """An organ (gpt2, layers 2:5) and key directories for two sites and two coordinators."""

    organ: Path
    site_a: KeyDir
    site_b: KeyDir
    coordinator: KeyDir
    other_coordinator: KeyDir


@pytest.fixture(scope="session")
def envelope_parties(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> EnvelopeParties:
    root = tmp_path_factory.mktemp("envelope-parties")
    organ = root / "organ.safetensors"
    extract_organ(tiny_models["gpt2"], organ, LayerRange(2, 5))
    keys = {name: create_key_dir(root / name, name) for name in ("site-a", "site-b", "coordinator", "other-coordinator")}
    return EnvelopeParties(organ, keys["site-a"], keys["site-b"], keys["coordinator"], keys["other-coordinator"])


@dataclass(frozen=True)
class EnvelopeWorld:
    """A coordinator's state in a fresh directory: trust (both sites enrolled), replay cache, audit log, outputs."""

    parties: EnvelopeParties
    trust: TrustStore
    replay: ReplayCache
    audit: AuditLog
    out_dir: Path

    def seal(self, sender: KeyDir | None = None, *, run_id: str = "run-1", round: int = 1, chunk_size: int = 16384,
             recipient: KeyDir | None = None, organ: Path | None = None, **kwargs) -> bytes:
        return seal_organ(organ or self.parties.organ, sender=sender or self.parties.site_a,
                          recipient=(recipient or self.parties.coordinator).identity, run_id=run_id, round=round,
                          chunk_size=chunk_size, **kwargs)

    def open(self, envelope, *, name: str = "opened.safetensors", run_id: str = "run-1", round: int = 1, **kwargs) -> OpenedOrgan:
        kwargs.setdefault("key", self.parties.coordinator)
        kwargs.setdefault("trust", self.trust)
        kwargs.setdefault("replay", self.replay)
        kwargs.setdefault("audit", self.audit)
        return open_envelope(envelope, run_id=run_id, round=round, out=self.out_dir / name, **kwargs)

    def outputs(self) -> list[str]:
        """Every file in the output directory (an organ, or a stray temporary file)."""
        return sorted(p.name for p in self.out_dir.iterdir())


@pytest.fixture
def envelope_world(envelope_parties: EnvelopeParties, tmp_path: Path) -> EnvelopeWorld:
    trust = TrustStore(tmp_path / "trust")
    trust.enrol(envelope_parties.site_a.identity)
    trust.enrol(envelope_parties.site_b.identity)
    out = tmp_path / "out"
    out.mkdir()
    return EnvelopeWorld(envelope_parties, trust, ReplayCache(tmp_path / "state" / "replay.jsonl"),
                         AuditLog(tmp_path / "state" / "audit.jsonl"), out)


# --- Training: small text corpora (test_train.py, test_data.py, test_baselines.py, test_sweep.py) ---

import random  # noqa: E402


def _sentences(words: list[str], count: int, seed: int) -> str:
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) + "." for _ in range(count)) + "\n"


@pytest.fixture(scope="session")
def train_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of two small 'clinical' text files (about 40 kB in all)."""
    root = tmp_path_factory.mktemp("train-corpus")
    words = "the patient was given aspirin and fever went down after two days of rest blood pressure stable".split()
    (root / "notes-a.txt").write_text(_sentences(words, 300, 1), encoding="utf-8")
    (root / "notes-b.txt").write_text(_sentences(words, 300, 2), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def general_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small file of 'general' text, another vocabulary."""
    path = tmp_path_factory.mktemp("general-corpus") / "general.txt"
    words = "a quick brown fox jumps over lazy dogs while the sun sets behind green hills".split()
    path.write_text(_sentences(words, 200, 3), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run every test on one torch thread: tiny models gain nothing from more, and on shared cores
    two threads stall each other (10x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _site_text(site: str, seed: int) -> str:
    gen = torch.Generator().manual_seed(seed)
    words = [f"{site}{i}" for i in range(40)]
    return "\n".join(" ".join(words[int(j)] for j in torch.randint(0, 40, (12,), generator=gen)) for _ in range(300))


# --- Federation: a tiny base, keys for three sites and a coordinator, each site's text (test_federation_*.py) ---

FEDERATION_SITES = ("north", "south", "east")


@pytest.fixture(scope="session")
def small_federation(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``root``, ``base`` (tiny GPT-2), ``keys`` (FederationKeys), ``data`` (site -> its own text file); ``root/val.txt``."""
    from organfed.server.enrolment import make_federation_keys

    root = tmp_path_factory.mktemp("federation")
    base = write_tiny_model("gpt2", root / "base", seed=3)
    keys = make_federation_keys(root / "keys", FEDERATION_SITES)
    data = {}
    for i, site in enumerate(FEDERATION_SITES):
        data[site] = root / "data" / f"{site}.txt"
        data[site].parent.mkdir(parents=True, exist_ok=True)
        data[site].write_text(_site_text(site, i))
    (root / "val.txt").write_text(_site_text("north", 99))
    return {"root": root, "base": base, "keys": keys, "data": data}
