"""Train the demo tokenizer: byte-level BPE on the general corpus's train split only.

Usage (from the repository root):
    python examples/demo_assets/build_tokenizer.py --corpora runs/demo-corpora --out shared/demo/assets/base

Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json, loadable with
``AutoTokenizer.from_pretrained(out)``. Deterministic for a given corpus.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from organfed.shared.demo.corpora import Domain, build_demo_corpora, read_split

END_OF_TEXT = "<|endoftext|>"
VOCAB_SIZE = 4096
CONTEXT = 256


def train_tokenizer(texts: list[str], *, vocab_size: int) -> Tokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization, no normaliser) with one special token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=True,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, required=True, help="where the demo corpora are (built if absent)")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write the tokenizer into")
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    args = parser.parse_args()

    corpora = build_demo_corpora(args.corpora)
    texts = [r.text for r in read_split(corpora, Domain.GENERAL, "train")]
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(texts, vocab_size=args.vocab_size),
        bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT, pad_token=END_OF_TEXT,
        model_max_length=CONTEXT, clean_up_tokenization_spaces=False,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(args.out)
    for domain in Domain:
        text = corpora[domain].val.text.read_text(encoding="utf-8")
        print(f"{domain.value:9} val: {len(text.encode()) / len(wrapped(text)['input_ids']):.2f} bytes per token")


if __name__ == "__main__":
    main()
