"""The position sweep: in-memory transplants measure what real transplants measure; JSON, Markdown and PNG."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from organfed.client.train import initial_organ
from organfed.shared.cli.main import main
from organfed.shared.data import load_token_ids, load_tokenizer
from organfed.shared.errors import ConfigError, IncompatibleOrganError
from organfed.shared.evaluate import perplexity
from organfed.shared.model_dir import load_model
from organfed.shared.organ import LayerRange, extract_organ, load_organ
from organfed.shared.surgery import Placement, TransplantMode, transplant
from organfed.shared.sweep import position_sweep, read_sweep, write_sweep
from organfed.shared.tiny import write_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def domain_ids(tiny_models, train_corpus):
    return load_token_ids(load_tokenizer(tiny_models["gpt2"]), [train_corpus], max_tokens=400)


@pytest.mark.parametrize("family_name", ["gpt2", "gpt-oss"])
@pytest.mark.parametrize("mode", list(TransplantMode))
def test_sweep_matches_real_transplants(tiny_models, domain_ids, tmp_path, family_name, mode):
    # Prepare: an organ from another seed's model, so every position changes something
    base = tiny_models[family_name]
    donor = write_tiny_model(family_name, tmp_path / "donor", seed=5)
    extract_organ(donor, tmp_path / "organ.safetensors", LayerRange(1, 3))
    organ = load_organ(tmp_path / "organ.safetensors")
    # Execute
    result = position_sweep(base, organ, domain_ids, mode=mode, block_size=64, positions=[0, 3], progress=False)
    # Assert
    for point in result.points:
        out = transplant(base, [Placement(organ, point.position)], mode, tmp_path / f"r{point.position}").out
        assert point.domain == perplexity(load_model(out), domain_ids, block_size=64).perplexity
    assert result.base_domain == perplexity(load_model(base), domain_ids, block_size=64).perplexity
    assert len(result.warnings) == 1 and result.warnings[0].startswith("WARNING: organ was trained on base")


def test_a_float32_organ_is_swept_in_a_bfloat16_recipient_as_transplant_converts_it(tiny_models, domain_ids, tmp_path):
    AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    load_tokenizer(tiny_models["llama"]).save_pretrained(tmp_path / "bf16")
    organ = initial_organ(tiny_models["llama"], LayerRange(1, 3))
    result = position_sweep(tmp_path / "bf16", organ, domain_ids, mode=TransplantMode.INSERT, block_size=64, positions=[0],
                            progress=False)
    out = transplant(tmp_path / "bf16", [Placement(organ, 0)], TransplantMode.INSERT, tmp_path / "r").out
    assert result.points[0].domain == perplexity(load_model(out), domain_ids, block_size=64).perplexity
    assert any("converted to the recipient's BF16" in w for w in result.warnings)


def test_the_bases_own_layers_at_their_place_change_nothing(tiny_models, domain_ids, general_corpus):
    base = tiny_models["llama"]
    general = load_token_ids(load_tokenizer(base), [general_corpus], max_tokens=300)
    result = position_sweep(base, initial_organ(base, LayerRange(2, 5)), domain_ids, mode=TransplantMode.REPLACE,
                            block_size=64, general_ids=general, progress=False)
    assert [p.position for p in result.points] == [0, 1, 2, 3]
    at_home = result.points[2]
    assert at_home.domain == result.base_domain and at_home.general == result.base_general
    assert result.points[0].domain != result.base_domain


def test_positions_outside_the_model_are_refused(tiny_models, domain_ids):
    organ = initial_organ(tiny_models["gpt2"], LayerRange(2, 5))
    with pytest.raises(ConfigError, match="outside 0..3"):
        position_sweep(tiny_models["gpt2"], organ, domain_ids, mode=TransplantMode.REPLACE, block_size=64, positions=[4])
    with pytest.raises(IncompatibleOrganError):
        position_sweep(tiny_models["llama"], organ, domain_ids, mode=TransplantMode.INSERT, block_size=64, positions=[0])


def test_results_are_written_as_json_markdown_and_png(tiny_models, domain_ids, tmp_path):
    organ = initial_organ(tiny_models["gpt2"], LayerRange(2, 5))
    results = [position_sweep(tiny_models["gpt2"], organ, domain_ids, mode=m, block_size=64, positions=[0, 2], label=m.value,
                              progress=False) for m in TransplantMode]
    paths = write_sweep(results, tmp_path / "sweep")
    assert read_sweep(paths["json"]) == results
    markdown = paths["md"].read_text()
    assert "| position | domain ppl |" in markdown and "**insert** (insert;" in markdown
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_sweep(tiny_models, train_corpus, general_corpus, tmp_path, capsys):
    extract_organ(tiny_models["gpt2"], tmp_path / "organ.safetensors", LayerRange(2, 5))
    code = main(["sweep", "--model", str(tiny_models["gpt2"]), "--organ", str(tmp_path / "organ.safetensors"),
                 "--data", str(train_corpus), "--general-data", str(general_corpus), "--positions", "1:3",
                 "--mode", "insert", "--block-size", "64", "--max-tokens", "300", "--out", str(tmp_path / "s"), "--no-progress"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["best_position"] in (1, 2)
    (saved,) = read_sweep(tmp_path / "s.json")
    assert [p.position for p in saved.points] == [1, 2] and saved.base_general is not None
