"""A progress bar for long work: steps done, loss, tokens per second and time left.

A thin layer over tqdm that writes to stderr, shows itself only on a terminal
(unless forced), and lets messages be printed without breaking the bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


class TrainProgress:
    """``with TrainProgress(total, initial=done) as bar: bar.update(step, loss, tokens)``."""

    def __init__(self, total: int, *, initial: int = 0, desc: str = "train", enabled: bool | None = None) -> None:
        """``enabled=None`` shows the bar only when stderr is a terminal."""
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=None if enabled is None else not enabled,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
        )
        self._start, self._tokens = time.perf_counter(), 0

    def update(self, step: int, *, loss: float, tokens: int) -> None:
        """Record that ``step`` steps are done, the last loss, and ``tokens`` more tokens seen."""
        self._tokens += tokens
        rate = self._tokens / max(time.perf_counter() - self._start, 1e-9)
        self._bar.set_postfix_str(f"loss={loss:.4f}, {rate:,.0f} tok/s", refresh=False)
        self._bar.update(step - self._bar.n)

    def write(self, message: str) -> None:
        """Print a line above the bar (to stderr), when the bar is shown."""
        if not self._bar.disable:
            self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def progress_iter(items: Iterable[T], *, desc: str, enabled: bool | None = None) -> Iterable[T]:
    """``items`` with a plain tqdm bar on stderr (ETA included), for sweeps and benchmarks."""
    return tqdm(items, desc=desc, file=sys.stderr, dynamic_ncols=True, disable=None if enabled is None else not enabled)
