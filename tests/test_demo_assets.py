"""Demo assets: the corpora are deterministic, cached and split cleanly; the shipped base loads and fits its corpus."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from organfed.shared.demo import corpora as corpora_module
from organfed.shared.demo.base_model import demo_base_dir, demo_base_provenance
from organfed.shared.demo.corpora import SITE_DOMAINS, DemoCorpora, Domain, build_demo_corpora, read_split
from organfed.shared.demo.records import Record, read_records, records_to_text, split_records
from organfed.shared.errors import DataError


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> DemoCorpora:
    return build_demo_corpora(tmp_path_factory.mktemp("corpora"), progress=False)


@pytest.fixture(scope="module")
def base() -> tuple[torch.nn.Module, object]:
    directory = demo_base_dir()
    return AutoModelForCausalLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory)


def _files(corpora: DemoCorpora) -> list[Path]:
    return [p for d in corpora.domains for s in (d.train, d.val) for p in (s.text, s.records)]


def test_build_is_byte_identical_across_runs(corpora: DemoCorpora, tmp_path: Path) -> None:
    again = build_demo_corpora(tmp_path / "again", progress=False)

    assert again.digest == corpora.digest
    for a, b in zip(_files(corpora), _files(again), strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_complete_build_is_a_cache_hit(corpora: DemoCorpora, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*_: object, **__: object) -> None:
        raise AssertionError("a verified build was rebuilt")

    monkeypatch.setattr(corpora_module.stdlib_text, "stdlib_sources", must_not_run)

    assert build_demo_corpora(corpora.root, progress=False) == corpora


def test_damaged_build_is_rebuilt(corpora: DemoCorpora, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(corpora.root, copy)
    damaged = copy / "clinical" / "val.jsonl"
    damaged.write_bytes(damaged.read_bytes()[:-10])

    rebuilt = build_demo_corpora(copy, progress=False)

    assert rebuilt.digest == corpora.digest
    assert damaged.read_bytes() == corpora["clinical"].val.records.read_bytes()
    assert not list(copy.rglob("*.tmp"))


def test_splits_are_non_empty_disjoint_and_sized(corpora: DemoCorpora) -> None:
    for files in corpora.domains:
        train, val = read_split(corpora, files.domain, "train"), read_split(corpora, files.domain, "val")
        assert train and val
        assert not {r.id for r in train} & {r.id for r in val}
        assert not {r.text for r in train} & {r.text for r in val}
        assert files.train.text.read_bytes() == records_to_text(train)
        assert 100_000 <= files.val.text.stat().st_size <= 220_000
        if files.domain in SITE_DOMAINS:
            assert 500_000 <= files.train.text.stat().st_size <= 2_000_000


def test_code_domain_is_held_out_of_the_general_corpus(corpora: DemoCorpora) -> None:
    code = {r.id.removeprefix("source:") for s in ("train", "val") for r in read_split(corpora, Domain.CODE, s)}
    general = {r.id.removeprefix("module:") for s in ("train", "val") for r in read_split(corpora, Domain.GENERAL, s)}

    assert code and not code & general


def test_clinical_notes_are_self_contained_records(corpora: DemoCorpora) -> None:
    notes = read_split(corpora, Domain.CLINICAL, "val")

    assert all("MRN" in note.text for note in notes)
    assert len({note.text for note in notes}) == len(notes)


def test_unknown_domain_and_split_raise_data_error(corpora: DemoCorpora) -> None:
    with pytest.raises(DataError):
        corpora["astrology"]
    with pytest.raises(DataError):
        read_split(corpora, Domain.CODE, "test")


def test_split_depends_on_ids_not_on_order() -> None:
    records = [Record(f"r{i}", "word " * (i + 1)) for i in range(50)]

    forward = split_records(records, salt="s", val_chars=200)
    backward = split_records(reversed(records), salt="s", val_chars=200)

    assert forward == backward
    with pytest.raises(DataError):
        split_records(records + records[:1], salt="s", val_chars=200)


def test_bad_records_raise_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b"}\n', encoding="utf-8")

    with pytest.raises(DataError):
        read_records(bad)
    with pytest.raises(DataError):
        Record("empty", "  \n")


def test_shipped_base_is_a_small_standard_gpt2(base: tuple[torch.nn.Module, object]) -> None:
    model, tokenizer = base
    n_params = sum(p.numel() for p in model.parameters())
    size = sum(p.stat().st_size for p in demo_base_dir().iterdir())

    assert model.config.model_type == "gpt2" and 6 <= model.config.n_layer <= 8
    assert 1_000_000 <= n_params <= 4_000_000 and size < 12_500_000
    assert tokenizer.eos_token == "<|endoftext|>" and 4_000 <= len(tokenizer) <= 8_192
    assert demo_base_provenance().parameters == n_params


def test_tokenizer_round_trips_text(base: tuple[torch.nn.Module, object]) -> None:
    _, tokenizer = base
    text = "def f(x):\n\treturn x  # ünïcödé, 😀\nBP 128/74 mmHg, creatinine 1.42 mg/dL (H)\n\n"

    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_base_fits_general_text_far_better_than_clinical_notes(
    corpora: DemoCorpora, base: tuple[torch.nn.Module, object]
) -> None:
    model, tokenizer = base

    def perplexity(domain: Domain) -> float:
        text = corpora[domain].val.text.read_text(encoding="utf-8")[:12_000]
        ids = torch.tensor(tokenizer(text)["input_ids"][: 4 * 256]).view(4, 256)
        with torch.no_grad():
            return math.exp(model(input_ids=ids, labels=ids).loss.item())

    general, clinical = perplexity(Domain.GENERAL), perplexity(Domain.CLINICAL)

    assert general < 100
    assert clinical > 3 * general
