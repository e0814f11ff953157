"""``organfed bench surgery``: peak memory of extract and transplant against organ and shard sizes.

Builds a random GPT-2-shaped model (124M by default) saved in shards, then runs
each operation in a fresh process and records its peak RSS. The floor is a
process that imports the same code and does nothing; the naive step loads the
whole model with transformers and reads every weight once (transformers maps
files lazily, so a load alone touches little), which is what an implementation
that edits the model in memory costs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from organfed.shared.bench.measure import median_sample, mib, run_in_child


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("surgery", help="peak memory of extract and transplant on a GPT-2-124M-shaped model")
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--shard-size", default="100MB", help="max shard size of the model written (default: 100MB)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", type=Path, help="where to build the model (default: a temporary directory)")
    p.set_defaults(run=run)


def build_model(out: Path, hidden: int, layers: int, shard_size: str) -> None:
    run_in_child(
        "import torch\n"
        "from transformers import GPT2Config, AutoModelForCausalLM\n"
        "torch.manual_seed(0)\n"
        f"m = AutoModelForCausalLM.from_config(GPT2Config(n_embd={hidden}, n_layer={layers}, n_head={max(1, hidden // 64)}))\n"
        f"m.save_pretrained({str(out)!r}, max_shard_size={shard_size!r})\n"
    )


def run(args: argparse.Namespace) -> int:
    work = args.workdir or Path(tempfile.mkdtemp(prefix="organfed-bench-"))
    model, organ = work / "model", work / "organ.safetensors"
    if not model.exists():
        build_model(model, args.hidden, args.layers, args.shard_size)
    imports = "from organfed.shared.organ import extract_organ, load_organ, LayerRange\nfrom organfed.shared.surgery import *\n"
    steps = {
        "floor (imports only)": imports,
        "extract (3 layers)": imports + f"extract_organ({str(model)!r}, {str(organ)!r})\n",
        "transplant replace": imports
        + f"transplant({str(model)!r}, [Placement(load_organ({str(organ)!r}), {args.layers // 3})], TransplantMode.REPLACE, {str(work / 'r')!r}, overwrite=True)\n",
        "transplant insert": imports
        + f"transplant({str(model)!r}, [Placement(load_organ({str(organ)!r}), 0)], TransplantMode.INSERT, {str(work / 'i')!r}, overwrite=True)\n",
        "load full model, touch weights (naive)": imports
        + "from transformers import AutoModelForCausalLM\n"
        + f"m = AutoModelForCausalLM.from_pretrained({str(model)!r})\n"
        + "sum(float(p.sum()) for p in m.parameters())\n",
    }
    results = {name: median_sample([run_in_child(code) for _ in range(args.repeats)]) for name, code in steps.items()}
    shards = sorted(model.glob("*.safetensors"))
    sizes = {
        "model_mib": mib(sum(p.stat().st_size for p in shards)),
        "largest_shard_mib": mib(max(p.stat().st_size for p in shards)),
        "organ_mib": mib(organ.stat().st_size),
        "shards": len(shards),
    }
    floor = results["floor (imports only)"].peak_rss_bytes
    print(f"model {sizes['model_mib']:.0f} MiB in {sizes['shards']} shards (largest {sizes['largest_shard_mib']:.0f} MiB); "
          f"organ {sizes['organ_mib']:.0f} MiB; median of {args.repeats} runs\n")
    print("| step | seconds | peak RSS MiB | above floor MiB | above floor / organ |")
    print("|---|---:|---:|---:|---:|")
    for name, s in results.items():
        above = mib(s.peak_rss_bytes - floor)
        print(f"| {name} | {s.seconds:.2f} | {mib(s.peak_rss_bytes):.0f} | {above:.0f} | {above / sizes['organ_mib']:.2f} |")
    print()
    print(json.dumps({"sizes": sizes, "steps": {n: vars(s) for n, s in results.items()}}))
    return 0
