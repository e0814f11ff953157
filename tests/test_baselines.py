"""LoRA and full fine-tuning: same pipeline as organs, loss goes down, LoRA merged into a plain model."""

from __future__ import annotations

import json

import pytest
import torch

from organfed.client.baselines import PROVENANCE_NAME, BaselineMethod, LoraSettings, train_baseline
from organfed.client.config import TrainConfig
from organfed.client.loop import RunControl
from organfed.client.train import load_data
from organfed.shared.cli.main import main
from organfed.shared.errors import ConfigError
from organfed.shared.model_dir import load_model, open_model_dir
from organfed.shared.safetensors_io import read_header

QUIET = RunControl(progress=False)
CONFIG = TrainConfig(steps=15, batch_size=4, block_size=32, learning_rate=3e-3, eval_blocks=16)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("family_name", ["gpt2", "llama"])
def test_lora_learns_and_merges_into_a_plain_model(tiny_models, train_corpus, tmp_path, family_name):
    # Prepare
    base = tiny_models[family_name]
    # Execute
    result = train_baseline(base, [train_corpus], CONFIG, method="lora", lora=LoraSettings(rank=4), control=QUIET)
    out = result.save(tmp_path / "lora", base)
    # Assert
    assert result.stats.val_loss < result.stats.initial_val_loss - 0.05
    header = read_header(next(out.glob("*.safetensors")))
    assert not [k for k in header.entries if "lora" in k]
    ids = torch.randint(0, 257, (2, 20), generator=torch.Generator().manual_seed(0))
    assert torch.equal(load_model(out)(ids).logits, result.model(ids).logits)
    assert not torch.equal(load_model(out)(ids).logits, load_model(base)(ids).logits)
    provenance = json.loads((out / PROVENANCE_NAME).read_text())
    assert provenance["method"] == "lora" and provenance["lora"]["rank"] == 4 and provenance["steps"] == 15


def test_lora_trains_only_adapter_weights(tiny_models, train_corpus):
    md = open_model_dir(tiny_models["gpt2"])
    result = train_baseline(md.path, [train_corpus], CONFIG.__class__(steps=2, block_size=32, eval_blocks=4),
                            method=BaselineMethod.LORA, lora=LoraSettings(rank=2, target_modules=("c_attn",)), control=QUIET)
    hidden, layers = md.config.n_embd, md.num_layers
    assert result.stats.trainable_parameters == layers * 2 * (hidden + 3 * hidden)
    merged, original = result.model.state_dict(), load_model(md.path).state_dict()
    changed = {k for k in original if not torch.equal(merged[k], original[k])}
    assert changed and all(k.endswith("attn.c_attn.weight") for k in changed)


def test_full_fine_tuning_changes_every_layer(tiny_models, train_corpus):
    base = tiny_models["llama"]
    result = train_baseline(base, [train_corpus], CONFIG, method="full", control=QUIET)
    assert result.stats.val_loss < result.stats.initial_val_loss - 0.05
    original = load_model(base).state_dict()
    assert result.stats.trainable_parameters == sum(p.numel() for p in load_model(base).parameters())
    for i in range(open_model_dir(base).num_layers):
        key = f"model.layers.{i}.mlp.down_proj.weight"
        assert not torch.equal(result.model.state_dict()[key], original[key])


def test_baselines_read_the_same_blocks_as_organs(tiny_models, train_corpus):
    blocks = load_data(tiny_models["gpt2"], [train_corpus], CONFIG)
    result = train_baseline(tiny_models["gpt2"], blocks, TrainConfig(steps=1, block_size=32, eval_blocks=4), method="full", control=QUIET)
    assert result.data == blocks.stats


def test_lora_settings_name_the_bad_field():
    with pytest.raises(ConfigError, match="rank"):
        LoraSettings(rank=0)
    with pytest.raises(ConfigError, match="dropout"):
        LoraSettings(dropout=1.5)


def test_a_lora_target_that_names_no_layer_is_refused_with_the_names_there_are(tiny_models, train_corpus):
    with pytest.raises(ConfigError, match="c_atn match no linear layer; this model has c_attn, c_fc, c_proj"):
        train_baseline(tiny_models["gpt2"], [train_corpus], CONFIG, method="lora", lora=LoraSettings(target_modules=("c_atn",)),
                       control=QUIET)


def test_cli_baseline_writes_a_model_directory(tiny_models, train_corpus, tmp_path, capsys):
    out = tmp_path / "full"
    code = main(["baseline", "--method", "full", "--model", str(tiny_models["gpt2"]), "--data", str(train_corpus),
                 "--steps", "2", "--block-size", "32", "--batch-size", "2", "--eval-blocks", "4", "--out", str(out), "--no-progress"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["method"] == "full"
    assert load_model(out).config.n_layer == 6 and (out / "tokenizer.json").is_file()
