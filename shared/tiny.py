"""Tiny random-init models of each family, with a byte-level tokenizer, for tests and examples.

Nothing is downloaded: the tokenizer is 256 byte tokens plus an end-of-text
token, and the weights come from a seeded random init.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, GPT2Config, GptOssConfig, LlamaConfig, PretrainedConfig, PreTrainedTokenizerFast

from organfed.shared.errors import ConfigError

EOS = "<|endoftext|>"
VOCAB_SIZE = 257
FAMILIES = ("gpt2", "llama", "gpt-oss")


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: one token per byte, plus ``<|endoftext|>`` as id 256."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)


def tiny_config(family: str, *, num_layers: int = 6, hidden: int = 32, context: int = 128) -> PretrainedConfig:
    """The config of a tiny model of ``family`` (GPT-OSS gets 4 experts and a sliding window of 8)."""
    if num_layers < 1:
        raise ConfigError(f"a tiny model needs at least one layer, got {num_layers}")
    if hidden < 8 or hidden % 8:
        raise ConfigError(f"hidden size must be a multiple of 8 (4 heads of an even size), got {hidden}")
    common = dict(vocab_size=VOCAB_SIZE, bos_token_id=VOCAB_SIZE - 1, eos_token_id=VOCAB_SIZE - 1)
    if family == "gpt2":
        return GPT2Config(n_embd=hidden, n_layer=num_layers, n_head=4, n_positions=context, **common)
    if family == "llama":
        return LlamaConfig(
            hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=num_layers, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=context, **common,
        )
    if family == "gpt-oss":
        return GptOssConfig(
            hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=num_layers, num_attention_heads=4,
            num_key_value_heads=2, head_dim=hidden // 4, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
            max_position_embeddings=context,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            **common,
        )
    raise ConfigError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")


def write_tiny_model(family: str, out: Path | str, *, num_layers: int = 6, hidden: int = 32, seed: int = 0) -> Path:
    """Write a tiny random-init model of ``family`` with its tokenizer to ``out``."""
    config = tiny_config(family, num_layers=num_layers, hidden=hidden)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.random.set_rng_state(generator_state)
    out = Path(out)
    model.save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    return out
