"""Where a run's time goes: the wall seconds and core-seconds of each stage, recorded from whichever thread runs it.

Core-seconds are the running thread's CPU time (``time.thread_time``), so a stage that hands its work to threads
of its own (ONNX Runtime's intra-op threads) counts only the calling thread's share; the benchmarks attribute the
rest of the process's CPU time to it. Stages that run in different threads at once overlap in wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stages:
    """Accumulated wall seconds, core-seconds and calls per named stage; safe to use from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[str, list[float]] = {}  # name -> [wall s, core s, calls]

    def add(self, name: str, wall_s: float, cpu_s: float) -> None:
        with self._lock:
            total = self._totals.setdefault(name, [0.0, 0.0, 0])
            total[0] += wall_s
            total[1] += cpu_s
            total[2] += 1

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name``."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, time.thread_time() - cpu)

    def table(self) -> dict[str, dict[str, float]]:
        """``{stage: {"wall_s", "cpu_s", "calls"}}`` in the order the stages first ran."""
        with self._lock:
            return {name: {"wall_s": w, "cpu_s": c, "calls": n} for name, (w, c, n) in self._totals.items()}

    def line(self) -> str:
        """One line for the log: each stage's wall seconds and core-seconds."""
        return ", ".join(f"{name} {t['wall_s']:.1f} s ({t['cpu_s']:.1f} core-s)" for name, t in self.table().items())
