"""After the last round: transplant into the recipient, evaluate against the base, write the report.

The recipient is a standard Hugging Face directory. Its perplexity per domain
is measured on the written directory itself, next to the unchanged base; the
curve per round is measured in memory from each round's stored organ. The
report is JSON plus Markdown, with two PNG plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from organfed.server.aggregate import Method
from organfed.server.coordinator import Coordinator
from organfed.server.selection import Evaluator, layout
from organfed.server.store import RunState
from organfed.shared.atomic import write_bytes_atomic, write_json_atomic
from organfed.shared.evaluate import perplexity
from organfed.shared.model_dir import load_model
from organfed.shared.organ import Organ
from organfed.shared.surgery import Placement, transplant
from organfed.shared.sweep import ComposedModel


def final_organs(co: Coordinator, state: RunState) -> tuple[list[Organ], list[str]]:
    """The organ(s) the run produced, with a label each."""
    if co.config.method is Method.PER_SITE:
        items = sorted(state.per_site.items(), key=lambda kv: co.trust.lookup(kv[0]).name)
        return [co.store.load(d) for _, d in items], [co.trust.lookup(k).name for k, _ in items]
    return [co.store.load(state.current)], [f"{co.config.method.value} round {state.completed_rounds}"]


def write_report(co: Coordinator, state: RunState) -> dict[str, Any]:
    """Transplant, evaluate and write ``report.json``, ``report.md`` and the plots into the run directory."""
    cfg, out = co.config, co.run_dir
    organs, labels = final_organs(co, state)
    where = layout(co, len(organs), labels)
    placements = [Placement(o, p, label) for o, p, label in zip(organs, where.positions, labels, strict=True)]
    result = transplant(co.base.path, placements, where.mode, out / "recipient", overwrite=True)
    co.event("transplanted", out=str(result.out), layers=result.num_layers, mode=where.mode.value, positions=list(where.positions))

    evaluator = Evaluator(co.base, device=cfg.device, max_tokens=cfg.eval_max_tokens)
    recipient = ComposedModel(load_model(result.out, device=cfg.device), co.base.adapter)
    domains: dict[str, dict[str, float]] = {}
    for name, paths in cfg.eval_sets.items():
        base = evaluator.perplexity(paths)
        fed = perplexity(recipient, evaluator.ids(paths), block_size=evaluator.block_size).perplexity
        domains[name] = {"base": base, "federated": fed, "change_pct": 100 * (fed / base - 1)}
    per_round = []
    if cfg.method is not Method.PER_SITE:
        for record in state.history:
            organ = co.store.load(record["result"])
            per_round.append({"round": record["round"], "domains": {
                name: evaluator.perplexity(paths, [organ], where.mode, where.positions[:1]) for name, paths in cfg.eval_sets.items()
            }})
    report = {
        "run_id": cfg.run_id, "method": cfg.method.value, "mode": cfg.mode.value, "rounds": state.completed_rounds,
        "layers": list(co.start.manifest.source_layers), "base_model": str(co.base.path), "base_fingerprint": co.base_fingerprint,
        "placement": {"mode": where.mode.value, "positions": list(where.positions), "organs": labels},
        "recipient": str(result.out), "warnings": list(result.warnings), "evaluation": domains, "per_round": per_round,
        "history": state.history, "train": cfg.train.hyperparameters(),
    }
    write_json_atomic(out / "report.json", report)
    write_bytes_atomic(out / "report.md", render_markdown(report).encode())
    plot_report(report, out)
    co.event("report", path=str(out / "report.md"))
    return report


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# organfed run `{report['run_id']}`", "",
        f"{report['rounds']} round(s), method **{report['method']}**, training mode **{report['mode']}**, "
        f"organ layers {report['layers'][0]}:{report['layers'][1]}, placed by {report['placement']['mode']} at "
        f"{report['placement']['positions']}.", "",
        "| domain | base perplexity | federated perplexity | change |", "|---|---:|---:|---:|",
    ]
    for name, row in report["evaluation"].items():
        lines.append(f"| {name} | {row['base']:.2f} | {row['federated']:.2f} | {row['change_pct']:+.1f}% |")
    if report["per_round"]:
        names = list(report["evaluation"])
        lines += ["", "Perplexity after each round:", "", "| round | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        lines.append("| 0 (base) | " + " | ".join(f"{report['evaluation'][n]['base']:.2f}" for n in names) + " |")
        for row in report["per_round"]:
            lines.append(f"| {row['round']} | " + " | ".join(f"{row['domains'][n]:.2f}" for n in names) + " |")
    lines += ["", "Rounds:", ""]
    for record in report["history"]:
        failed = "; ".join(f"{k}: {v}" for k, v in record["failures"].items()) or "none"
        lines.append(f"- round {record['round']}: accepted {', '.join(sorted(record['accepted']))}; refused or missing: {failed}")
    if report["warnings"]:
        lines += ["", *[f"> {w}" for w in report["warnings"]]]
    lines += ["", f"Recipient model (loads with plain transformers): `{report['recipient']}`", ""]
    return "\n".join(lines)


def plot_report(report: dict[str, Any], out: Path) -> None:
    """``perplexity_by_domain.png`` and, with rounds to show, ``perplexity_by_round.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["evaluation"])
    if not names:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [report["evaluation"][n]["base"] for n in names], 0.4, label="base")
    ax.bar([x + 0.2 for x in xs], [report["evaluation"][n]["federated"] for n in names], 0.4, label="federated")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("perplexity (lower is better)")
    ax.set_title(f"Perplexity per domain: base vs {report['method']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "perplexity_by_domain.png", dpi=120)
    plt.close(fig)
    if report["per_round"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for n in names:
            ys = [report["evaluation"][n]["base"]] + [r["domains"][n] for r in report["per_round"]]
            ax.plot(range(len(ys)), ys, marker="o", label=n)
        ax.set_xticks(range(len(report["per_round"]) + 1))
        ax.set_xlabel("round (0: base)")
        ax.set_ylabel("perplexity")
        ax.set_title("Perplexity after each round")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "perplexity_by_round.png", dpi=120)
        plt.close(fig)
