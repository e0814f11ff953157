"""Organ training: loss goes down, only the organ changes, resume is exact, provenance is recorded."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from organfed.client.checkpoint import load_checkpoint
from organfed.client.config import TrainConfig, TrainMode
from organfed.client.loop import RunControl, run_training
from organfed.client.step import adamw
from organfed.client.train import build_trainable, initial_organ, load_data, train_organ
from organfed.client.wrapper import WrapperModel
from organfed.shared.cli.main import main
from organfed.shared.errors import CheckpointError, ConfigError, IncompatibleOrganError, TrainingInterrupted
from organfed.shared.fingerprint import fingerprint_model_dir
from organfed.shared.model_dir import load_model, open_model_dir
from organfed.shared.organ import LayerRange, extract_organ, load_organ, save_organ
from organfed.shared.tiny import write_tiny_model

MODES = [TrainMode.WRAPPER, TrainMode.IN_SITU]
QUIET = RunControl(progress=False)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(mode: TrainMode, **changes) -> TrainConfig:
    settings = dict(mode=mode, steps=12, batch_size=4, block_size=32, learning_rate=3e-3, eval_blocks=16)
    return TrainConfig(**{**settings, **changes})


def dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


# -- the configuration ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"learning_rate": 0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"block_size": 1}, "block_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"mode": "sideways"}, "mode"),
        ({"steps": 5, "epochs": 1.0}, "epochs"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"device": "tpu"}, "device"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"steps": True}, "steps"),
    ],
)
def test_config_names_the_bad_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**changes)


def test_config_parses_enums_and_counts_steps():
    cfg = TrainConfig(mode="wrapper", schedule="constant", epochs=2.0, batch_size=4, grad_accum=2)
    assert cfg.mode is TrainMode.WRAPPER and cfg.total_steps(train_blocks=20) == 5
    assert TrainConfig().total_steps(1000) == 200


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(learning_rate=1.0, warmup_steps=4, min_lr_ratio=0.1)
    rates = [cfg.learning_rate_at(s, 20) for s in range(20)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(rates[3:], rates[4:]))
    assert rates[-1] > 0.1 and cfg.learning_rate_at(20, 20) == pytest.approx(0.1)


# -- training -----------------------------------------------------------------------------------

@pytest.mark.parametrize("family_name", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", MODES)
def test_loss_goes_down_and_provenance_is_recorded(tiny_models, train_corpus, tmp_path, family_name, mode):
    # Prepare
    base = tiny_models[family_name]
    before = dir_digest(base)
    # Execute
    result = train_organ(base, [train_corpus], config(mode, steps=20), layers=LayerRange(1, 4), control=QUIET)
    # Assert
    stats = result.stats
    assert stats.val_loss < stats.initial_val_loss - 0.05
    training = result.organ.manifest.training
    assert training["mode"] == mode.value and training["steps"] == 20 and training["tokens_seen"] == 20 * 4 * 32
    assert training["data"]["digest"] == result.data.digest and training["data"]["blocks"] == result.data.blocks
    assert training["final_val_loss"] == stats.val_loss and training["seed"] == 0
    assert training["hyperparameters"]["learning_rate"] == 3e-3
    assert "text" not in json.dumps(training).replace("digest_of", "")  # counts and a digest, never the data
    assert result.organ.manifest.base_fingerprint == fingerprint_model_dir(base)
    assert result.organ.manifest.source_layers == (1, 4)
    save_organ(result.organ, tmp_path / "organ.safetensors")
    assert load_organ(tmp_path / "organ.safetensors").manifest.training == training
    assert dir_digest(base) == before


def test_gpt_oss_trains_in_both_modes(tiny_models, train_corpus):
    for mode in MODES:
        result = train_organ(tiny_models["gpt-oss"], [train_corpus], config(mode, steps=8), control=QUIET)
        assert result.stats.val_loss < result.stats.initial_val_loss


@pytest.mark.parametrize("family_name", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", MODES)
def test_only_organ_parameters_change(tiny_models, train_corpus, family_name, mode):
    # Prepare
    md = open_model_dir(tiny_models[family_name])
    cfg = config(mode, steps=6, weight_decay=0.1)
    organ = initial_organ(md.path, LayerRange(2, 4))
    trainable = build_trainable(md, organ, mode)
    organ_ids = {id(p) for p in trainable.params.values()}
    frozen = {n: t.detach().clone() for n, t in [*trainable.module.named_parameters(), *trainable.module.named_buffers()]
              if id(t) not in organ_ids}
    start = {n: p.detach().clone() for n, p in trainable.params.items()}
    # Execute
    run_training(trainable, load_data(md.path, [train_corpus], cfg), cfg, {}, QUIET)
    # Assert
    after = dict([*trainable.module.named_parameters(), *trainable.module.named_buffers()])
    assert frozen and all(torch.equal(after[n], t) for n, t in frozen.items())
    assert all(not after[n].requires_grad for n in frozen)
    assert any(not torch.equal(p, start[n]) for n, p in trainable.params.items())


def test_weight_decay_spares_biases_and_norms(tiny_models):
    md = open_model_dir(tiny_models["gpt2"])
    trainable = build_trainable(md, initial_organ(md.path, LayerRange(2, 4)), TrainMode.IN_SITU)
    _, optimizer = adamw(trainable, config(TrainMode.IN_SITU, weight_decay=0.1))
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert len(decay) == len(trainable.params)
    for name, param in trainable.params.items():
        assert decay[id(param)] == (0.1 if param.dim() >= 2 else 0.0), name


def test_wrapper_holds_only_the_ends_and_the_organ(tiny_models):
    md = open_model_dir(tiny_models["llama"])
    wrapper = WrapperModel(md, initial_organ(md.path, LayerRange(2, 5)))
    assert len(wrapper.organ) == 3 and len(md.adapter.layers(wrapper.shell)) == 0
    keys = wrapper.state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {"shell", "organ"}
    assert not [k for k in keys if ".layers." in k]


@pytest.mark.parametrize("family_name", ["gpt2", "llama", "gpt-oss"])
def test_wrapper_of_every_layer_is_the_whole_model(tmp_path, family_name):
    base = write_tiny_model(family_name, tmp_path / "base", num_layers=3, seed=3)
    md = open_model_dir(base)
    wrapper = WrapperModel(md, initial_organ(base, LayerRange(0, 3))).eval()
    ids = torch.randint(0, 257, (2, 24), generator=torch.Generator().manual_seed(0))
    assert torch.equal(wrapper(ids), load_model(base)(ids).logits)


def test_transplanted_in_situ_organ_is_what_was_trained(tiny_models, train_corpus, tmp_path):
    from organfed.shared.surgery import Placement, TransplantMode, transplant

    base = tiny_models["gpt2"]
    result = train_organ(base, [train_corpus], config(TrainMode.IN_SITU, steps=4), control=QUIET)
    start = result.organ.manifest.source_layers[0]
    out = transplant(base, [Placement(result.organ, start)], TransplantMode.REPLACE, tmp_path / "recipient").out
    recipient, original = load_model(out).state_dict(), load_model(base).state_dict()
    for key, value in recipient.items():
        layer = key.split(".")[2] if key.startswith("transformer.h.") else None
        if layer is not None and start <= int(layer) < start + 3:
            suffix = key.split(".", 3)[3]
            assert torch.equal(value, result.organ.tensors[f"{int(layer) - start}.{suffix}"])
        else:
            assert torch.equal(value, original[key]), key


def test_training_leaves_the_callers_random_state_alone(tiny_models, train_corpus):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_organ(tiny_models["gpt2"], [train_corpus], config(TrainMode.WRAPPER, steps=2), control=QUIET)
    assert torch.equal(torch.rand(3), expected)


def test_organ_keeps_its_dtype(tmp_path, train_corpus):
    base = write_tiny_model("llama", tmp_path / "base", num_layers=4)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(base).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    (tmp_path / "base" / "tokenizer.json").rename(tmp_path / "bf16" / "tokenizer.json")
    (tmp_path / "base" / "tokenizer_config.json").rename(tmp_path / "bf16" / "tokenizer_config.json")
    result = train_organ(tmp_path / "bf16", [train_corpus], config(TrainMode.WRAPPER, steps=3), control=QUIET)
    assert result.organ.manifest.dtype == "BF16"
    assert all(t.dtype == torch.bfloat16 for t in result.organ.tensors.values())


# -- federated continuation -----------------------------------------------------------------------

def test_training_continues_from_a_given_organ(tiny_models, train_corpus):
    base = tiny_models["gpt2"]
    first = train_organ(base, [train_corpus], config(TrainMode.IN_SITU, steps=6), control=QUIET)
    second = train_organ(base, [train_corpus], config(TrainMode.IN_SITU, steps=6, seed=1), organ=first.organ, control=QUIET)
    assert second.organ.manifest.training["initial_organ_digest"] == first.organ.manifest.tensor_digest
    assert second.stats.initial_val_loss == pytest.approx(first.stats.val_loss, rel=1e-5)
    assert second.organ.manifest.base_fingerprint == first.organ.manifest.base_fingerprint


def test_an_organ_of_another_base_is_refused(tiny_models, train_corpus, tmp_path):
    other = write_tiny_model("gpt2", tmp_path / "other", seed=9)
    extract_organ(other, tmp_path / "o.safetensors", LayerRange(2, 5))
    with pytest.raises(IncompatibleOrganError, match="base"):
        train_organ(tiny_models["gpt2"], [train_corpus], config(TrainMode.WRAPPER), organ=load_organ(tmp_path / "o.safetensors"))
    with pytest.raises(IncompatibleOrganError):
        train_organ(tiny_models["llama"], [train_corpus], config(TrainMode.WRAPPER), organ=load_organ(tmp_path / "o.safetensors"))


def test_block_size_beyond_the_context_is_refused(tiny_models, train_corpus):
    with pytest.raises(ConfigError, match="context"):
        train_organ(tiny_models["gpt2"], [train_corpus], config(TrainMode.WRAPPER, block_size=256))


# -- resume ---------------------------------------------------------------------------------------

def _kill_at(step: int, exc: type[BaseException]):
    def on_step(info) -> None:
        if info.step == step:
            raise exc("stop")
    return on_step


@pytest.mark.parametrize(("family_name", "mode"), [("gpt2", TrainMode.WRAPPER), ("llama", TrainMode.IN_SITU)])
def test_killed_run_resumes_to_the_same_organ(tiny_models, train_corpus, tmp_path, family_name, mode):
    # Prepare: dropout on, warm-up and cosine, clipping, accumulation: every piece of state matters.
    base = tiny_models[family_name]
    cfg = config(mode, steps=9, checkpoint_every=2, warmup_steps=2, grad_accum=2, weight_decay=0.01)
    full = train_organ(base, [train_corpus], cfg, control=QUIET)
    ckpt = tmp_path / "ckpt"
    # Execute: a hard kill after step 5 (the last checkpoint is step 4), then resume
    with pytest.raises(RuntimeError):
        train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=ckpt, on_step=_kill_at(5, RuntimeError), progress=False))
    assert load_checkpoint(ckpt).step == 4
    resumed = train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=ckpt, resume=True, progress=False))
    # Assert
    assert resumed.stats.resumed_from == 4
    assert resumed.organ.manifest.tensor_digest == full.organ.manifest.tensor_digest
    assert resumed.stats.val_loss == full.stats.val_loss and resumed.stats.tokens == full.stats.tokens


def test_ctrl_c_checkpoints_and_resumes_exactly(tiny_models, train_corpus, tmp_path):
    base = tiny_models["gpt2"]
    cfg = config(TrainMode.IN_SITU, steps=7)
    full = train_organ(base, [train_corpus], cfg, control=QUIET)
    ckpt = tmp_path / "ckpt"

    def press_ctrl_c(info) -> None:
        if info.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    with pytest.raises(TrainingInterrupted, match="after step 3"):
        train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=ckpt, on_step=press_ctrl_c, progress=False))
    assert load_checkpoint(ckpt).step == 3
    assert signal.getsignal(signal.SIGINT) is before, "the caller's Ctrl-C handler is restored"
    resumed = train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=ckpt, resume=True, progress=False))
    assert resumed.organ.manifest.tensor_digest == full.organ.manifest.tensor_digest


def test_resume_refuses_another_run(tiny_models, train_corpus, tmp_path):
    base, ckpt = tiny_models["gpt2"], tmp_path / "ckpt"
    cfg = config(TrainMode.WRAPPER, steps=6)
    with pytest.raises(TrainingInterrupted):
        train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=ckpt, on_step=_kill_at(2, KeyboardInterrupt), progress=False))
    with pytest.raises(CheckpointError, match="hyperparameters.learning_rate was 0.003, now 0.01"):
        train_organ(base, [train_corpus], config(TrainMode.WRAPPER, steps=6, learning_rate=1e-2),
                    control=RunControl(checkpoint_dir=ckpt, resume=True, progress=False))
    with pytest.raises(CheckpointError, match="--resume"):
        train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=ckpt, progress=False))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=tmp_path / "empty", resume=True, progress=False))


def test_damaged_checkpoint_is_refused(tiny_models, train_corpus, tmp_path):
    base, ckpt = tiny_models["gpt2"], tmp_path / "ckpt"
    cfg = config(TrainMode.WRAPPER, steps=4)
    with pytest.raises(TrainingInterrupted):
        train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=ckpt, on_step=_kill_at(2, KeyboardInterrupt), progress=False))
    (tensors,) = ckpt.glob("state-*.safetensors")
    raw = bytearray(tensors.read_bytes())
    raw[-1] ^= 1
    tensors.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="digest"):
        train_organ(base, [train_corpus], cfg, control=RunControl(checkpoint_dir=ckpt, resume=True, progress=False))


# -- the demo base --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_on_the_demo_base_a_transplanted_organ_beats_the_base(tmp_path, mode):
    from organfed.shared.data import load_token_ids, load_tokenizer
    from organfed.shared.demo.base_model import demo_base_dir
    from organfed.shared.demo.corpora import build_demo_corpora
    from organfed.shared.evaluate import perplexity
    from organfed.shared.surgery import Placement, TransplantMode, transplant

    # Prepare
    base = demo_base_dir()
    corpora = build_demo_corpora(tmp_path / "corpora", progress=False)
    val = load_token_ids(load_tokenizer(base), [corpora["clinical"].val.text], max_tokens=8192)
    cfg = TrainConfig(mode=mode, steps=40, batch_size=8, block_size=128, learning_rate=1e-3, eval_blocks=16)
    # Execute
    result = train_organ(base, [corpora["clinical"].train.text], cfg, control=QUIET)
    start = result.organ.manifest.source_layers[0]
    out = transplant(base, [Placement(result.organ, start)], TransplantMode.REPLACE, tmp_path / "recipient").out
    # Assert
    before = perplexity(load_model(base), val, block_size=128).perplexity
    after = perplexity(load_model(out), val, block_size=128).perplexity
    assert after < 0.95 * before


# -- the command line ----------------------------------------------------------------------------

def test_cli_trains_writes_the_organ_and_cleans_up(tiny_models, train_corpus, tmp_path, capsys):
    out = tmp_path / "organ.safetensors"
    code = main(["train", "--model", str(tiny_models["gpt2"]), "--data", str(train_corpus), "--mode", "wrapper",
                 "--layers", "0:2", "--steps", "3", "--block-size", "32", "--batch-size", "2", "--eval-blocks", "4", "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3 and report["tensor_digest"] == load_organ(out).manifest.tensor_digest
    assert load_organ(out).manifest.training["mode"] == "wrapper"
    assert not (tmp_path / "organ.safetensors.ckpt").exists()
    assert main(["train", "--model", str(tiny_models["gpt2"]), "--data", str(train_corpus), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"\x00\x01binary", "binary"), (b"\xff\xfe\xfa not utf8", "not UTF-8"), (b"short", "too small")],
)
def test_cli_reports_bad_data_in_one_line(tiny_models, tmp_path, capsys, content, message):
    (tmp_path / "data.txt").write_bytes(content)
    code = main(["train", "--model", str(tiny_models["gpt2"]), "--data", str(tmp_path / "data.txt"),
                 "--out", str(tmp_path / "o.safetensors"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and message in err[0] and err[0].startswith("organfed train: error:")


def test_cli_reports_a_bad_setting_in_one_line(tiny_models, train_corpus, tmp_path, capsys):
    code = main(["train", "--model", str(tiny_models["gpt2"]), "--data", str(train_corpus), "--lr", "-1",
                 "--out", str(tmp_path / "o.safetensors")])
    assert code == 1 and "learning_rate" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cli_refuses_cuda_without_a_device(tiny_models, train_corpus, tmp_path, capsys):
    code = main(["train", "--model", str(tiny_models["gpt2"]), "--data", str(train_corpus), "--device", "cuda",
                 "--block-size", "32", "--out", str(tmp_path / "o.safetensors"), "--no-progress"])
    assert code == 1 and "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["seed", "split_seed"])
def test_seeds_out_of_range_are_refused(field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: 2**45})
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: -1})
