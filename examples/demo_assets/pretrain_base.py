"""Pretrain the demo base model: a small GPT-2 trained from scratch on the general corpus only.

Usage (from the repository root, after build_tokenizer.py has written the tokenizer into --out):
    python examples/demo_assets/pretrain_base.py --corpora runs/demo-corpora --out shared/demo/assets/base

Reads the tokenizer in --out, trains with AdamW (linear warm-up, cosine decay), keeps the weights with the
best general-validation loss, then writes a standard Hugging Face model directory (config.json,
model.safetensors, generation_config.json) and provenance.json with the measured perplexities.
The domain corpora are never trained on: they are only measured, to show the room for adaptation.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from tqdm import tqdm
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from organfed.shared.demo.corpora import Domain, DemoCorpora, build_demo_corpora, read_split


@dataclass(frozen=True)
class TrainConfig:
    """Model shape and training hyperparameters (the defaults built the shipped base)."""

    n_layer: int = 6
    n_embd: int = 160
    n_head: int = 4
    context: int = 256
    dropout: float = 0.1
    batch_size: int = 16
    steps: int = 2000
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    seed: int = 1234
    threads: int = 1  # on shared cores one thread beats two: OpenMP stalls when a core is taken


def token_stream(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> torch.Tensor:
    """All texts as one 1-D tensor of token ids, each text followed by the end-of-text token."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    return torch.tensor(ids, dtype=torch.long)


def random_batch(stream: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` windows of ``context`` tokens at random offsets (labels are the inputs, shifted by HF)."""
    starts = torch.randint(0, len(stream) - cfg.context, (cfg.batch_size,), generator=generator)
    return torch.stack([stream[s : s + cfg.context] for s in starts.tolist()])


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def mean_loss(model: GPT2LMHeadModel, ids: torch.Tensor, context: int, max_blocks: int | None = None) -> float:
    """Mean next-token loss over non-overlapping blocks of ``context`` tokens (a short tail is dropped)."""
    was_training = model.training
    model.eval()
    blocks = ids[: len(ids) // context * context].view(-1, context)[:max_blocks]
    total = sum(model(input_ids=b, labels=b).loss.item() * len(b) for b in blocks.split(16))
    model.train(was_training)
    return total / len(blocks)


def build_model(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> GPT2LMHeadModel:
    """A fresh GPT-2 (learned positions, tied head) sized by ``cfg`` for ``tokenizer``."""
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.context, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config)


def train(model: GPT2LMHeadModel, train_ids: torch.Tensor, val_ids: torch.Tensor, cfg: TrainConfig) -> dict:
    """The training loop; leaves the best-validation weights in ``model`` and returns a summary."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    best = (float("inf"), -1, copy.deepcopy(model.state_dict()))
    history, smooth, start = [], None, time.perf_counter()
    model.train()
    bar = tqdm(range(cfg.steps), desc="pretrain", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = random_batch(train_ids, cfg, generator)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        tokens_per_s = (step + 1) * cfg.batch_size * cfg.context / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{smooth:.3f}", lr=f"{lr_at(step, cfg):.1e}", tok_s=f"{tokens_per_s:.0f}")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            val = mean_loss(model, val_ids, cfg.context)
            history.append({"step": step + 1, "train_loss": round(smooth, 4), "val_loss": round(val, 4)})
            bar.write(f"step {step + 1}: train loss {smooth:.3f}, val loss {val:.3f} (ppl {math.exp(val):.1f})")
            if val < best[0]:
                best = (val, step + 1, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    wall = time.perf_counter() - start
    return {"best_step": best[1], "best_val_loss": round(best[0], 4), "wall_time_s": round(wall, 1),
            "tokens_seen": cfg.steps * cfg.batch_size * cfg.context, "history": history}


def measure(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerBase, corpora: DemoCorpora, context: int) -> dict:
    """Perplexity on every domain's validation text file (tokenized as a whole, 256-token blocks)."""
    result = {}
    for domain in Domain:
        ids = torch.tensor(tokenizer(corpora[domain].val.text.read_text(encoding="utf-8"))["input_ids"])
        result[domain.value] = round(math.exp(mean_loss(model, ids, context)), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, required=True, help="where the demo corpora are (built if absent)")
    parser.add_argument("--out", type=Path, required=True, help="model directory holding the tokenizer")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    args = parser.parse_args()

    cfg = TrainConfig(steps=args.steps, threads=args.threads)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    corpora = build_demo_corpora(args.corpora)
    tokenizer = AutoTokenizer.from_pretrained(args.out)
    train_ids = token_stream(tokenizer, [r.text for r in read_split(corpora, Domain.GENERAL, "train")])
    val_ids = token_stream(tokenizer, [r.text for r in read_split(corpora, Domain.GENERAL, "val")])
    model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f}M parameters; {len(train_ids):,} train / {len(val_ids):,} val tokens")

    summary = train(model, train_ids, val_ids, cfg)
    model.eval()
    perplexity = measure(model, tokenizer, corpora, cfg.context)
    print("validation perplexity:", perplexity)
    model.generation_config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(args.out)
    provenance = {
        "name": "organfed-demo-gpt2",
        "parameters": n_params,
        "trained_on": "general corpus, train split only",
        "corpora_digest": corpora.digest,
        "train_tokens": len(train_ids),
        "config": asdict(cfg),
        "training": {k: v for k, v in summary.items() if k != "history"},
        "validation_perplexity": perplexity,
        "history": summary["history"],
        "command": "python " + " ".join(sys.argv),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "licence": "Apache-2.0 (weights and tokenizer: organfed project); training text: PSF License (Python)",
    }
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
