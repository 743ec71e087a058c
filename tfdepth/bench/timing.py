"""Timing for the benchmark: statistics of runs, repeated calls, interleaved rounds and the time budget.

Every figure is ``{"median", "min", "max", "runs": [...]}`` over timed runs (:func:`summarize`); a run
repeats a call until it lasts ``min_run_s``. Timings are wall clock (``time.perf_counter``).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, List, Optional, Sequence

# Share of the remaining time budget a section gets when it starts (unused time flows to later ones).
SECTION_WEIGHTS = {"train": 3.5, "input": 0.8, "infer": 2.5, "scaling": 3.5, "torch": 2.0}


def summarize(values: Sequence[float], digits: int = 6) -> dict:
    """``{"median", "min", "max", "runs"}`` of the per-run values (rounded to ``digits`` significant)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize: no runs")

    def r(v):
        return float(f"{v:.{digits}g}")

    return {"median": r(statistics.median(values)), "min": r(min(values)), "max": r(max(values)),
            "runs": [r(v) for v in values]}


def scaled(stats: dict, factor: float) -> dict:
    """The same statistics multiplied by ``factor`` (> 0; e.g. images/s -> GFLOP/s)."""
    return summarize([v * factor for v in stats["runs"]])


def inverted(stats: dict, factor: float = 1.0) -> dict:
    """``factor / value`` per run (e.g. seconds per call -> calls per second)."""
    return summarize([factor / v for v in stats["runs"]])


class Budget:
    """The command's wall-clock budget; sections get a share of what is left when they start."""

    def __init__(self, total_s: float, sections: Sequence[str], start: Optional[float] = None):
        self.start = time.perf_counter() if start is None else start
        self.deadline = self.start + float(total_s)
        self.pending = list(sections)
        self.section_deadline = self.deadline

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def begin(self, section: str) -> float:
        """Start ``section``; returns its allowance in seconds (its share of the time left)."""
        weights = sum(SECTION_WEIGHTS[s] for s in self.pending)
        share = SECTION_WEIGHTS[section] / weights if weights else 1.0
        if section in self.pending:
            self.pending.remove(section)
        allowance = max(0.0, self.remaining()) * share
        self.section_deadline = time.perf_counter() + allowance
        return allowance

    def section_left(self) -> float:
        return self.section_deadline - time.perf_counter()

    def fits(self, predicted_s: float) -> bool:
        return predicted_s <= self.section_left()

    def skip_reason(self, predicted_s: float) -> str:
        return (f"time budget: predicted {predicted_s:.0f} s, {max(0.0, self.section_left()):.0f} s left of this "
                "section's share of --budget-s")


def timed_runs(call: Callable[[], object], repeats: int, min_run_s: float, budget: Optional[Budget] = None,
               warmup: int = 0) -> dict:
    """Time ``call`` (already traced / compiled) over ``repeats`` runs, after ``warmup`` untimed calls.

    One calibration call measures its duration; a run then repeats the call ``k`` times so that it
    lasts at least ``min_run_s``. When one call already takes that long, the calibration call is the
    first run. Returns ``{"seconds_per_call": stats, "calls_per_run": k, "cut_by_budget": bool}``;
    runs are cut short (never below one) when ``budget`` says the next would not fit.
    """
    for _ in range(warmup):
        call()
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    k = max(1, int(math.ceil(min_run_s / max(first, 1e-9))))
    runs: List[float] = [first] if k == 1 else []
    cut = False
    while len(runs) < repeats:
        if budget is not None and runs and not budget.fits(k * statistics.median(runs)):
            cut = True
            break
        t0 = time.perf_counter()
        for _ in range(k):
            call()
        runs.append((time.perf_counter() - t0) / k)
    return {"seconds_per_call": summarize(runs), "calls_per_run": k, "cut_by_budget": cut}


def timed(fn: Callable[[], object]):
    """``(fn(), seconds it took)``."""
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


class RepeatedCalls:
    """A timed measurement: each run repeats ``self.call`` ``self.calls_per_run`` times and records
    the seconds per call in ``self.runs``."""

    def run_once(self) -> None:
        t0 = time.perf_counter()
        for _ in range(self.calls_per_run):
            self.call()
        self.runs.append((time.perf_counter() - t0) / self.calls_per_run)

    def _estimate_s(self, fallback_call_s: float) -> float:
        """Seconds one more run will take (median so far, else ``fallback_call_s`` per call)."""
        return self.calls_per_run * (statistics.median(self.runs) if self.runs else fallback_call_s)


def interleaved_rounds(measured: Sequence, repeats: int, budget: Optional[Budget]) -> bool:
    """``repeats`` rounds, each timing one run of every measurement in turn, so that every variant sees
    the same (possibly drifting) machine load. Returns True when the budget cut the rounds short (at
    least one round always runs)."""
    for r in range(repeats):
        if budget is not None and r > 0 and not budget.fits(sum(m.estimate_s() for m in measured) * 1.1):
            return True
        for m in measured:
            m.run_once()
    return False


def short_error(e: Exception) -> str:
    """``Type: first line of the message`` (at most 500 characters), for a measurement that failed."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:500]
