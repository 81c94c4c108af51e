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
    """The whole run's ``--budget-minutes``: what would not fit is skipped and reported."""

    def __init__(self, minutes: float | None):
        self.start = time.perf_counter()
        self.limit = minutes * 60 if minutes else None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def out(self) -> bool:
        return self.limit is not None and self.elapsed() > self.limit
