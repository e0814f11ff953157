"""Measure how different the demo corpora are, with and without the base model.

Usage (from the repository root):
    python examples/demo_assets/measure_domains.py --corpora runs/demo-corpora --json runs/demo-domains.json

Three checks, printed as Markdown tables (the numbers in docs/demo-data.md come from here):
1. Token statistics: Jensen-Shannon divergence between the domains' unigram distributions (base tokenizer).
2. Cross-domain bigram perplexity: an add-k bigram model fitted on each train split, scored on each
   validation split. Model-free; the diagonal should be far below the rest of its column.
3. Base model: perplexity on each validation split, then after a short full fine-tune on each site domain
   (``--adapt-steps``), perplexity of every adapted model on every validation split.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
from pretrain_base import TrainConfig, mean_loss, random_batch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from organfed.shared.demo.base_model import demo_base_dir
from organfed.shared.demo.corpora import SITE_DOMAINS, Domain, build_demo_corpora


def ids_of(tokenizer: PreTrainedTokenizerBase, path: Path) -> np.ndarray:
    """Token ids of a whole text file."""
    return np.asarray(tokenizer(path.read_text(encoding="utf-8"))["input_ids"], dtype=np.int64)


def js_divergence(a: np.ndarray, b: np.ndarray, vocab: int) -> float:
    """Jensen-Shannon divergence (bits, 0..1) between two token-unigram distributions."""
    p, q = (np.bincount(x, minlength=vocab) / len(x) for x in (a, b))
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return (kl(p) + kl(q)) / 2


def bigram_perplexity(train: np.ndarray, val: np.ndarray, vocab: int, k: float = 0.01) -> float:
    """Perplexity of an add-k bigram model fitted on ``train``, on ``val``."""
    pairs, counts = np.unique(train[:-1] * vocab + train[1:], return_counts=True)
    context = np.bincount(train[:-1], minlength=vocab)
    query = val[:-1] * vocab + val[1:]
    at = np.clip(np.searchsorted(pairs, query), 0, len(pairs) - 1)
    hits = np.where(pairs[at] == query, counts[at], 0)
    log_p = np.log((hits + k) / (context[val[:-1]] + k * vocab))
    return float(np.exp(-log_p.mean()))


def adapt(model: torch.nn.Module, ids: torch.Tensor, steps: int, lr: float = 5e-4) -> torch.nn.Module:
    """A copy of ``model`` fine-tuned (all weights, constant learning rate) for ``steps`` steps on ``ids``."""
    tuned = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=lr, weight_decay=0.0)
    cfg, generator = TrainConfig(), torch.Generator().manual_seed(0)
    for _ in tqdm(range(steps), desc="adapt", unit="step", leave=False):
        batch = random_batch(ids, cfg, generator)
        tuned(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return tuned.eval()


def table(title: str, rows: dict[str, dict[str, float]], fmt: str) -> str:
    """A Markdown table: one row per key of ``rows``, one column per validation split."""
    columns = list(next(iter(rows.values())))
    lines = [f"| {title} | " + " | ".join(columns) + " |", "| --- " * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(format(v[c], fmt) for c in columns) + " |" for name, v in rows.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None, help="base model directory (default: the shipped one)")
    parser.add_argument("--adapt-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    corpora = build_demo_corpora(args.corpora)
    model_dir = args.model or demo_base_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    vocab, context = len(tokenizer), model.config.n_positions
    train = {d.value: ids_of(tokenizer, corpora[d].train.text) for d in Domain}
    val = {d.value: ids_of(tokenizer, corpora[d].val.text) for d in Domain}
    result: dict[str, dict[str, dict[str, float]]] = {
        "js_divergence": {a: {b: js_divergence(train[a], train[b], vocab) for b in train} for a in train},
        "bigram_perplexity": {a: {b: bigram_perplexity(train[a], val[b], vocab) for b in val} for a in train},
    }

    def perplexities(m: torch.nn.Module) -> dict[str, float]:
        return {d: math.exp(mean_loss(m, torch.from_numpy(ids), context)) for d, ids in val.items()}

    result["model_perplexity"] = {"base": perplexities(model)}
    for domain in SITE_DOMAINS if args.adapt_steps else ():
        tuned = adapt(model, torch.from_numpy(train[domain.value]), args.adapt_steps)
        result["model_perplexity"][f"base + {args.adapt_steps} steps on {domain.value}"] = perplexities(tuned)

    print(table("JS divergence (bits), train vs train", result["js_divergence"], ".3f"), end="\n\n")
    print(table("bigram fitted on \\ scored on", result["bigram_perplexity"], ".1f"), end="\n\n")
    print(table("model \\ validation split", result["model_perplexity"], ".1f"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
