"""Measuring helpers for benchmarks: run a step in a fresh process, read its peak RSS and time."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass

# The child reads its own high-water mark (VmHWM): ru_maxrss survives exec on Linux, so
# in a child it can report the parent's peak instead of the child's.
_CHILD = """
import json, sys, time
start = time.perf_counter()
exec(compile(sys.argv[1], "<bench>", "exec"))
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_bytes": int(hwm.split()[1]) * 1024}))
"""


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_rss_bytes: int


def run_in_child(code: str, *, timeout: float = 1800) -> Sample:
    """Run ``code`` in a new Python process; return its wall time and peak resident memory."""
    out = subprocess.run([sys.executable, "-c", _CHILD, code], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{out.stderr[-2000:]}")
    return Sample(**json.loads(out.stdout.strip().splitlines()[-1]))


def median_sample(samples: list[Sample]) -> Sample:
    return Sample(
        seconds=statistics.median(s.seconds for s in samples),
        peak_rss_bytes=int(statistics.median(s.peak_rss_bytes for s in samples)),
    )


def mib(n: int) -> float:
    return n / 2**20
