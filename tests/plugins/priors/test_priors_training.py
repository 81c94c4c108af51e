"""The fixed-budget training bar (tests/copy_task.py) for every prior and multi-head kind:
on the copy task, 80 AdamW steps, the final loss is below half the initial one and within
2x of full attention's (measured 2026-12, seed 0: full 2.797 -> 0.045; the variants'
numbers are in the ids' comments below and in the README)."""

from __future__ import annotations

import pytest

import txdsl
from copy_task import assert_trains, copy_spec, full_baseline, train

VARIANTS = {  # kind: (attention in the copy decoder, aux_weight); measured initial -> final
    "talking_heads": ("talking_heads(heads: heads)", 0.0),  # 2.797 -> 0.043
    "collaborative": ("collaborative(heads: heads)", 0.0),  # 2.777 -> 0.033
    "adaptive_span": ("adaptive_span(heads: heads, max_span: context, ramp: 4, init: 0.5)",
                      0.01),  # 2.798 -> 0.031
    "multi_scale": ('multi_scale(heads: heads, spans: "4|8|16|16")', 0.0),  # 2.798 -> 0.041
    "head_routing": ("head_routing(heads: heads)", 0.0),  # 2.789 -> 0.045
    # the copy needs distance 8: a Gaussian starting at sigma 8 (width 4: 2.797 -> 2.297)
    "locality": ("locality(heads: heads, width: 8.0)", 0.0),  # 2.798 -> 0.048
    "realformer": ("realformer(heads: heads)", 0.0),  # 2.797 -> 0.045
    "synthesizer_dense": ("synthesizer_dense(heads: heads, max_len: context)", 0.0),  # -> 0.022
    "task_adapter": ("task_adapter(heads: heads, tasks: 2, max_len: 20, blocks: 4)",
                     0.0),  # 2.796 -> 0.05 (every row task 0: train() passes no task_ids)
}
RANDOM = "synthesizer_random(heads: heads, max_len: context)"


@pytest.fixture(scope="module")
def full():
    return full_baseline(copy_spec("full(heads: heads)", "full"))


@pytest.mark.parametrize("kind", list(VARIANTS))
def test_trains_on_the_copy_task(kind, full):
    attention, aux_weight = VARIANTS[kind]
    model = txdsl.build(copy_spec(attention, kind), backend="eager", seed=0).module
    assert_trains(train(model, aux_weight=aux_weight), full)


def test_synthesizer_random_within_the_fixed_budget(full):
    """The same 80 steps with a learning rate of 3e-2: a directly learned logit table moves
    at most about lr per entry per AdamW step, so at 3e-3 it can't reach a sharp alignment
    in 80 steps (measured 2.779 -> 1.616); at 3e-2, 2.779 -> 0.072 (bar: 0.090)."""
    model = txdsl.build(copy_spec(RANDOM, "random"), backend="eager", seed=0).module
    assert_trains(train(model, lr=3e-2), full)


def test_synthesizer_random_with_five_times_the_budget(full):
    """With 400 steps (full attention's 80-step loss stays the bar) it learns the copy:
    measured 2.779 -> 0.002."""
    model = txdsl.build(copy_spec(RANDOM, "random"), backend="eager", seed=0).module
    assert_trains(train(model, steps=400), full)
