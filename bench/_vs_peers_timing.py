"""Timing for ``bench/vs_peers.py``: adaptive repetitions within a time budget per
variant, fewer new tokens for a decoder too slow for it, and the whole run's budget."""

from __future__ import annotations

import time
from typing import Any, Callable

import _common as C

PROBE_TOKENS = 8  # new tokens of the probe that estimates a decoder's speed


def decode_tokens(call: Callable[[int], Any], new: int, seconds: float,
                  quick: bool, reference: bool) -> tuple[int, float, float]:
    """How many new tokens to measure ``call`` on: ``new``, unless one call would take
    longer than its whole time budget (then as many as fit, at least the probe's; never for
    the reference, HF generate). A probe of :data:`PROBE_TOKENS` first (twice when the
    first one compiled or warmed up); returns the tokens, the first probe's seconds and
    the warm seconds per step."""
    probe = min(PROBE_TOKENS, new)
    first = C.timed(lambda: call(probe))
    per = first / probe
    if quick:
        return new, first, per
    if first > 1.0:  # a compile or a cold start: the second probe is the warm speed
        per = C.timed(lambda: call(probe)) / probe
    fit = int(seconds / per)
    return (new if reference or fit >= new else max(probe, fit)), first, per


def reps_within(v: dict, max_reps: int, seconds: float) -> int:
    """Timed repetitions within ``seconds``, from the warm duration of one call."""
    return max(1, min(max_reps, int(seconds / max(v["call_s"], 1e-6))))


def timed_rounds(fns: dict[str, Callable[[], Any]], reps: dict[str, int],
                 clock: Budget) -> dict[str, list[float]]:
    """Interleaved rounds as :func:`_common.interleaved` (round ``r`` starts with the
    ``r``-th), each variant until its own ``reps``; one untimed round first for the variants
    that repeat most; after the first round, stops at the budget."""
    names = list(fns)
    for n in names:  # every variant ran warm already (probes, checked call); cheap ones again
        if reps[n] > 2:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
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
