"""Plots as PNG files, drawn with matplotlib's Agg canvas (no pyplot, no global backend switch)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from organfed.shared.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from organfed.shared.sweep import SweepResult


def plot_sweeps(results: Sequence[SweepResult], path: Path | str, *, title: str) -> Path:
    """Perplexity against position, one line per sweep; dashed: the unchanged base; dotted: the organ's source.

    Domain perplexity on the left, general perplexity (forgetting) on the right when measured.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("domain", "domain validation perplexity")]
    if any(r.base_general is not None for r in results):
        panels.append(("general", "general perplexity"))
    fig = Figure(figsize=(5.5 * len(panels), 4.2), dpi=120)
    FigureCanvasAgg(fig)
    for i, (field, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j, r in enumerate(results):
            color = f"C{j}"
            ys = [getattr(p, field) for p in r.points]
            ax.plot([p.position for p in r.points], ys, marker="o", color=color, label=f"{r.label} ({r.mode})")
            base = r.base_domain if field == "domain" else r.base_general
            if base is not None and all(base != getattr(o, "base_" + field) for o in results[:j]):
                ax.axhline(base, color="grey", linestyle="--", linewidth=1, label="base (no organ)")
            ax.axvline(r.organ_layers[0], color=color, linestyle=":", linewidth=1)
        ax.set_xlabel("organ position")
        ax.set_yscale("log")  # perplexities of a sweep span orders of magnitude
        ax.set_ylabel(label + " (log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)


def plot_tradeoff(points: Sequence[tuple[str, float, float, float]], base: tuple[float, float], path: Path | str, *, title: str) -> Path:
    """Domain against general perplexity, one line per method through its learning rates (log-log).

    ``points`` are ``(method, learning_rate, domain, general)``; runs that diverged (infinite) are left out.
    Down and to the left is better on both; the star is the unchanged base.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    methods = list(dict.fromkeys(p[0] for p in points))
    for i, method in enumerate(methods):
        runs = sorted((p for p in points if p[0] == method and math.isfinite(p[2]) and math.isfinite(p[3])), key=lambda p: p[1])
        ax.plot([p[3] for p in runs], [p[2] for p in runs], marker="o", color=f"C{i}", label=method)
        for _, lr, domain, general in runs:
            ax.annotate(f"{lr:g}", (general, domain), textcoords="offset points", xytext=(4, 4), fontsize=7, color=f"C{i}")
    ax.plot([base[1]], [base[0]], marker="*", markersize=12, color="black", linestyle="none", label="base (no training)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("general perplexity (forgetting; log scale)")
    ax.set_ylabel("domain validation perplexity (log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)
