"""Timing for ``bench/vs_peers.py``: adaptive repetitions within a time budget per
variant, interleaved, and the whole run's budget."""

from __future__ import annotations

import time
from typing import Any, Callable

import _common as C

WARMUP_BELOW = 1.5  # seconds: a warm call shorter than this is repeated untimed first

def reps_within(v: dict, max_reps: int, seconds: float) -> int:
    """Timed repetitions within ``seconds``, from the warm duration of one call."""
    return max(1, min(max_reps, int(seconds / max(v["call_s"], 1e-6))))


def timed_rounds(fns: dict[str, Callable[[], Any]], reps: dict[str, int], clock: Budget,
                 warm: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Interleaved rounds as :func:`_common.interleaved` (round ``r`` starts with the
    ``r``-th), each variant until its own ``reps``; after the first round, stops at the
    budget. ``warm``: name -> the seconds of a call already made warm (after a compile or a
    probe; the checked call of a decoder), counted as that variant's first repetition, so a
    slow call isn't run once more just to be thrown away. A variant repeating more than twice
    gets an untimed call first, instead of counting its warm one, when it has none or a
    cheap one (the first few calls of a shape run slower: oneDNN primitives and buffers
    are made then)."""
    warm = dict(warm or {})
    names = list(fns)
    for n in names:  # cheap calls (< WARMUP_BELOW s): one more untimed call, and their
        if reps[n] > 2 and (n not in warm or warm[n] < WARMUP_BELOW):  # warm one not counted
            fns[n]()
            warm.pop(n, None)
    times: dict[str, list[float]] = {n: [warm[n]] if n in warm else [] for n in names}
    for r in range(max(reps.values(), default=0)):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            if len(times[n]) < reps[n] and not (times[n] and clock.out()):
                times[n].append(C.timed(fns[n]))
    return times


class Budget:
    """The whole run's ``--budget-minutes``. Each cell's timed repetitions get a share of
    what is left (:meth:`variant_seconds`), so the run fits when its compiles and first
    calls do; what still would not fit is skipped and reported."""

    def __init__(self, minutes: float | None, cells: int = 0):
        self.start = time.perf_counter()
        self.limit = minutes * 60 if minutes else None
        self.cells_left = cells  # cells not finished yet, the one running included
        self.overheads: list[float] = []  # each finished cell's seconds outside its timing

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def out(self) -> bool:
        return self.limit is not None and self.elapsed() > self.limit

    def variant_seconds(self, default: float, variants: int) -> float:
        """Timed seconds for each of the ``variants`` of the cell about to be timed (its
        builds, compiles and checked calls are done): ``default``, or less when the cells
        left would not fit otherwise. Each cell after this one is expected to spend as
        long compiling and checking as the finished ones did on average (their builds
        not counted, see :meth:`finished`), and the time
        left after that is split evenly over this cell and those. At least one repetition
        is always timed (:func:`reps_within`); 0 here means just that one."""
        if self.limit is None or self.cells_left <= 0:
            return default
        overhead = sum(self.overheads) / len(self.overheads) if self.overheads else 0.0
        left = self.limit - self.elapsed() - overhead * (self.cells_left - 1)
        return max(0.0, min(default, left / self.cells_left / max(1, variants)))

    def finished(self, overhead: float) -> None:
        """A cell is done; it spent ``overhead`` seconds compiling and checking (outside
        its timed rounds, its builds not counted: a build is made once per model and
        dtype and then shared, so it says nothing about the cells after it)."""
        self.overheads.append(max(0.0, overhead))
        self.cells_left = max(0, self.cells_left - 1)

    def skipped(self) -> None:
        """A cell was skipped (over the budget): one fewer to share the time with."""
        self.cells_left = max(0, self.cells_left - 1)
