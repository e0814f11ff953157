"""``organfed bench training``: wrapper vs in-situ organs vs LoRA vs full fine-tuning, at equal steps.

Every method trains on the same blocks of one domain corpus for the same number
of steps, with the best learning rate of a small sweep: the rate is picked by
the loss on blocks held out of the training file, and the method is then
scored on the corpus's own validation file (domain perplexity) and on general
validation text (forgetting). Organs are scored transplanted into the base at
their own position. Median step times come from one interleaved timing pass
(each method's step in turn), so load from other processes hits them alike.
The best wrapper and in-situ organs are then swept over every position.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from organfed.client.baselines import BaselineMethod, CausalLM, LoraSettings, baseline_trainable, train_baseline
from organfed.client.config import TrainConfig, TrainMode
from organfed.client.loop import RunControl
from organfed.client.step import Trainable, adamw, evaluate_loss, train_step
from organfed.client.train import build_trainable, initial_organ, load_data, train_organ
from organfed.shared.atomic import write_bytes_atomic, write_json_atomic
from organfed.shared.blocks import BatchOrder, BlockData
from organfed.shared.cli.common import layer_range
from organfed.shared.data import load_token_ids, load_tokenizer
from organfed.shared.errors import TrainingError, TrainingInterrupted
from organfed.shared.evaluate import perplexity
from organfed.shared.model_dir import load_model, open_model_dir
from organfed.shared.organ import Organ
from organfed.shared.plots import plot_tradeoff
from organfed.shared.surgery import Placement, TransplantMode, transplant
from organfed.shared.sweep import position_sweep, write_sweep

METHODS = ("wrapper", "in-situ", "lora", "full")
DEFAULT_LRS = {"wrapper": "1e-4,3e-4,1e-3,3e-3", "in-situ": "1e-3,3e-3,1e-2,3e-2", "lora": "3e-3,1e-2,3e-2,1e-1",
               "full": "3e-4,1e-3,3e-3,1e-2"}
"""Four rates a factor of about 3 apart per method, centred on a pilot run's best (see docs/benchmarks.md)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("training", help="organ (wrapper, in-situ) vs LoRA vs full fine-tuning on the demo base, plus the position sweep")
    p.add_argument("--model", type=Path, help="base model directory (default: the shipped demo base)")
    p.add_argument("--corpora", type=Path, default=Path(tempfile.gettempdir()) / "organfed-demo-corpora",
                   help="where the demo corpora are built or found (default: a temporary directory)")
    p.add_argument("--domain", default="clinical", help="demo domain to adapt to (default: clinical)")
    p.add_argument("--train", nargs="+", type=Path, help="training text instead of the demo domain's train split")
    p.add_argument("--val", nargs="+", type=Path, help="domain validation text instead of the demo domain's")
    p.add_argument("--general", nargs="+", type=Path, help="general text instead of the demo general validation split")
    p.add_argument("--layers", type=layer_range, help="organ layers S:E (default: 3 layers from floor(L/3))")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--eval-tokens", type=int, default=32_768, help="tokens of domain and of general validation text scored")
    p.add_argument("--timing-rounds", type=int, default=15, help="interleaved steps timed per method")
    p.add_argument("--lora-rank", type=int, default=8)
    for method in METHODS:
        p.add_argument(f"--lrs-{method}", default=DEFAULT_LRS[method], help=f"learning rates for {method} (default: {DEFAULT_LRS[method]})")
    p.add_argument("--methods", default=",".join(METHODS), help="methods to run (default: all four)")
    p.add_argument("--no-sweep", action="store_true", help="skip the position sweep")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1; on shared cores more threads stall)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=Path("bench-training"), help="where training.json/.md and the sweep files go")
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Run:
    """One method at one learning rate."""

    method: str
    learning_rate: float
    heldout_loss: float
    training_val_loss: float
    domain_ppl: float
    general_ppl: float
    trainable_parameters: int
    train_seconds: float


@dataclass(frozen=True)
class Setup:
    base: Path
    blocks: BlockData
    domain_ids: torch.Tensor
    general_ids: torch.Tensor
    config: TrainConfig
    organ: Organ
    lora: LoraSettings


def _paths(args: argparse.Namespace) -> tuple[list[Path], list[Path], list[Path]]:
    if args.train and args.val and args.general:
        return args.train, args.val, args.general
    from organfed.shared.demo.corpora import build_demo_corpora

    corpora = build_demo_corpora(args.corpora, progress=False)
    return (args.train or [corpora[args.domain].train.text], args.val or [corpora[args.domain].val.text],
            args.general or [corpora["general"].val.text])


def _score(setup: Setup, model: torch.nn.Module) -> tuple[float, float]:
    bs = setup.config.block_size
    return (perplexity(model, setup.domain_ids, block_size=bs).perplexity,
            perplexity(model, setup.general_ids, block_size=bs).perplexity)


def _organ_model(setup: Setup, organ: Organ, work: Path) -> torch.nn.Module:
    """The base with ``organ`` transplanted at its own position: a real transplant, loaded back."""
    out = transplant(setup.base, [Placement(organ, organ.manifest.source_layers[0])], TransplantMode.REPLACE,
                     work / "recipient", overwrite=True).out
    return load_model(out)


def train_one(setup: Setup, method: str, lr: float, work: Path) -> tuple[Run, Organ | None]:
    """Train ``method`` at ``lr`` and score the deployed model; a run that diverges scores infinity."""
    try:
        return _train_and_score(setup, method, lr, work)
    except TrainingInterrupted:  # Ctrl-C stops the benchmark; it is not a diverged run
        raise
    except TrainingError:  # the loss stopped being finite
        inf = float("inf")
        return Run(method, lr, inf, inf, inf, inf, 0, 0.0), None


def _train_and_score(setup: Setup, method: str, lr: float, work: Path) -> tuple[Run, Organ | None]:
    control = RunControl(progress=None, desc=f"{method} lr={lr:g}")
    started = time.perf_counter()
    if method in ("wrapper", "in-situ"):
        cfg = dataclasses.replace(setup.config, mode=TrainMode(method), learning_rate=lr)
        result = train_organ(setup.base, setup.blocks, cfg, organ=setup.organ, control=control)
        organ, stats, model = result.organ, result.stats, _organ_model(setup, result.organ, work)
    else:
        cfg = dataclasses.replace(setup.config, learning_rate=lr)
        result = train_baseline(setup.base, setup.blocks, cfg, method=method, lora=setup.lora, control=control)
        organ, stats, model = None, result.stats, result.model
    seconds = time.perf_counter() - started
    domain, general = _score(setup, model)
    heldout = evaluate_loss(CausalLM(model, open_model_dir(setup.base).adapter), setup.blocks, max_blocks=setup.config.eval_blocks,
                            batch_size=setup.config.batch_size, device=torch.device("cpu"))
    return Run(method, lr, heldout, stats.val_loss, domain, general, stats.trainable_parameters, seconds), organ


def _trainable(setup: Setup, method: str) -> Trainable:
    md = open_model_dir(setup.base)
    if method in ("wrapper", "in-situ"):
        return build_trainable(md, setup.organ, TrainMode(method))
    return baseline_trainable(md, BaselineMethod(method), setup.lora, setup.config.seed)[0]


def interleaved_step_times(setup: Setup, methods: list[str], best: dict[str, Run], rounds: int) -> dict[str, float]:
    """Median seconds per optimizer step, each method's step in turn, same batches."""
    device = torch.device("cpu")
    prepared = {}
    for method in methods:
        trainable = _trainable(setup, method)
        module, optimizer = adamw(trainable, dataclasses.replace(setup.config, learning_rate=best[method].learning_rate))
        module.train()
        prepared[method] = (module, optimizer, list(trainable.params.values()))
    order = BatchOrder(setup.blocks.train, setup.config.batch_size, setup.config.seed)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(rounds + 1):
        batch = setup.blocks.batch(order(r))
        for method, (module, optimizer, params) in prepared.items():
            start = time.perf_counter()
            train_step(module, optimizer, params, [batch], max_grad_norm=setup.config.max_grad_norm, device=device)
            if r:  # the first round warms up
                times[method].append(time.perf_counter() - start)
    return {m: statistics.median(t) for m, t in times.items()}


def markdown(runs: list[Run], best: dict[str, Run], step_times: dict[str, float], base: tuple[float, float], setup: Setup) -> str:
    c = setup.config
    lines = [
        f"Equal steps: {c.steps} steps x {c.batch_size} blocks x {c.block_size} tokens "
        f"({c.steps * c.batch_size * c.block_size:,} tokens) per run; AdamW, cosine to 10%, clip 1.0, seed {c.seed}. "
        f"Learning rate picked by the deployed model's loss on {min(len(setup.blocks.val), c.eval_blocks)} blocks held out of the training file.",
        "",
        "| method | best lr | trainable params | domain ppl | vs base | general ppl | vs base | median step s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| base (no training) | | 0 | {base[0]:.2f} | | {base[1]:.2f} | | |",
    ]
    for method, r in best.items():
        lines.append(f"| {method} | {r.learning_rate:g} | {r.trainable_parameters:,} | {r.domain_ppl:.2f} | "
                     f"{100 * (r.domain_ppl / base[0] - 1):+.1f}% | {r.general_ppl:.2f} | {100 * (r.general_ppl / base[1] - 1):+.1f}% | "
                     f"{step_times.get(method, float('nan')):.3f} |")
    lines += ["", "Every run of the learning-rate sweep:", "",
              "| method | lr | held-out loss (deployed) | held-out loss (as trained) | domain ppl | general ppl | train s |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.method} | {r.learning_rate:g} | {r.heldout_loss:.4f} | {r.training_val_loss:.4f} | {r.domain_ppl:.2f} | "
              f"{r.general_ppl:.2f} | {r.train_seconds:.0f} |" for r in runs]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()  # one bar per weight load would drown the table
    from organfed.shared.demo.base_model import demo_base_dir

    base = args.model or demo_base_dir()
    train_paths, val_paths, general_paths = _paths(args)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size, seed=args.seed,
                         val_fraction=0.05, eval_blocks=128, device="cpu")
    tokenizer = load_tokenizer(base)
    setup = Setup(
        base=Path(base),
        blocks=load_data(base, train_paths, config),
        domain_ids=load_token_ids(tokenizer, val_paths, max_tokens=args.eval_tokens),
        general_ids=load_token_ids(tokenizer, general_paths, max_tokens=args.eval_tokens),
        config=config,
        organ=initial_organ(base, args.layers),
        lora=LoraSettings(rank=args.lora_rank, alpha=2.0 * args.lora_rank),
    )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    base_scores = _score(setup, load_model(base))
    runs: list[Run] = []
    organs: dict[tuple[str, float], Organ] = {}
    with tempfile.TemporaryDirectory(prefix="organfed-bench-") as tmp:
        for method in methods:
            for lr in (float(v) for v in getattr(args, f"lrs_{method.replace('-', '_')}").split(",")):
                result, organ = train_one(setup, method, lr, Path(tmp))
                runs.append(result)
                if organ is not None:
                    organs[(method, lr)] = organ
                print(json.dumps(dataclasses.asdict(result)), flush=True)
    best = {m: min((r for r in runs if r.method == m), key=lambda r: r.heldout_loss) for m in methods}
    step_times = interleaved_step_times(setup, methods, best, args.timing_rounds)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_sweep:
        sweeps = [position_sweep(base, organs[(m, best[m].learning_rate)], setup.domain_ids, mode=mode,
                                 block_size=config.block_size, general_ids=setup.general_ids, label=f"{m} organ")
                  for m in methods if (m, best[m].learning_rate) in organs for mode in TransplantMode]
        write_sweep(sweeps, args.out_dir / "sweep", title=f"Organ position sweep ({args.domain} organs, demo base)")
    plot_tradeoff([(r.method, r.learning_rate, r.domain_ppl, r.general_ppl) for r in runs], base_scores,
                  args.out_dir / "tradeoff.png", title=f"{args.domain}: domain vs general perplexity, every learning rate")
    table = markdown(runs, best, step_times, base_scores, setup)
    write_bytes_atomic(args.out_dir / "training.md", table.encode())
    write_json_atomic(args.out_dir / "training.json", {
        "config": config.hyperparameters(), "data": setup.blocks.stats.to_dict(), "base": str(base),
        "base_fingerprint": setup.organ.manifest.base_fingerprint,
        "organ_layers": list(setup.organ.manifest.source_layers), "base_ppl": base_scores,
        "runs": [dataclasses.asdict(r) for r in runs], "best": {m: dataclasses.asdict(r) for m, r in best.items()},
        "median_step_seconds": step_times, "eval_tokens": args.eval_tokens, "threads": args.threads,
    })
    print(table)
    return 0
