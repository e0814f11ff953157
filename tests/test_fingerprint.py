"""Base fingerprints: stable across sharding, sensitive to any weight or architecture number."""

from __future__ import annotations

import json

from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from organfed.shared.fingerprint import fingerprint_model_dir


def test_same_weights_same_fingerprint_whatever_the_sharding(tiny_models, tmp_path):
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).save_pretrained(sharded, max_shard_size="20KB")
    assert fingerprint_model_dir(sharded) == fingerprint_model_dir(tiny_models["llama"])


def test_one_changed_weight_changes_it(tiny_models, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["gpt2"], copy)
    tensors = load_file(str(copy / "model.safetensors"))
    tensors["transformer.h.3.ln_2.bias"][0] += 1e-3
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert fingerprint_model_dir(copy) != fingerprint_model_dir(tiny_models["gpt2"])


def test_an_architecture_number_changes_it(tiny_models, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["gpt2"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["layer_norm_epsilon"] = 1e-6
    (copy / "config.json").write_text(json.dumps(config))
    assert fingerprint_model_dir(copy) != fingerprint_model_dir(tiny_models["gpt2"])


def test_volatile_config_fields_do_not(tiny_models, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["gpt2"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["transformers_version"] = "0.0.1"
    (copy / "config.json").write_text(json.dumps(config))
    assert fingerprint_model_dir(copy) == fingerprint_model_dir(tiny_models["gpt2"])


def test_format(tiny_models):
    fp = fingerprint_model_dir(tiny_models["gpt-oss"])
    assert fp.startswith("sha256:") and len(fp) == 7 + 64


def test_a_rewrite_keeping_size_and_mtime_is_not_served_from_the_cache(tiny_models, tmp_path):
    import os
    import shutil
    import time

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models["gpt2"], copy)
    shard = copy / "model.safetensors"
    before = fingerprint_model_dir(copy)
    st = shard.stat()
    tensors = load_file(str(shard))
    tensors["transformer.h.3.ln_2.bias"][0] += 1e-3
    time.sleep(0.05)  # change times are kept at clock-tick granularity
    # a new file renamed over the shard: new inode and ctime, same name, size and (restored) mtime
    save_file(tensors, str(copy / "new.safetensors"), metadata={"format": "pt"})
    os.replace(copy / "new.safetensors", shard)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (shard.stat().st_size, shard.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    replaced = fingerprint_model_dir(copy)
    assert replaced != before
    # an in-place rewrite (same inode) back to the original bytes: only the ctime tells
    time.sleep(0.05)
    inode = shard.stat().st_ino
    with open(shard, "r+b") as fh:
        fh.write((tiny_models["gpt2"] / "model.safetensors").read_bytes())
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (shard.stat().st_ino, shard.stat().st_size) == (inode, st.st_size)
    assert fingerprint_model_dir(copy) == before != replaced
