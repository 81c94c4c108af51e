"""A fixed-budget training bar for attention variants (imported by name: ``copy_task``).

The catalogue issues ask of every trainable variant: on a synthetic task with
a fixed budget of steps, its final loss is below half of its initial loss and
within 2x of full attention's final loss with the same budget.

Two tasks, both needing attention to move information between positions:

- ``copy`` (causal models): ``a_1 .. a_n SEP a_1 .. a_n``, loss on the copy;
- ``reverse`` (bidirectional models with a per-token head): the output at
  position ``i`` is the input at position ``n - 1 - i`` (needs positions).

The protocol: 80 AdamW steps at a constant lr 3e-3, batch 16. ``train(warmup=...)``
ramps the learning rate linearly (opt-in, for measurements: a 20-step warmup was
measured on every test using this module and not adopted, see
tests/runtime/test_issue11_training.py).

:func:`train` returns ``(initial, final)`` evaluation losses;
:func:`full_baseline` caches full attention's result per configuration, so
several variant tests in one process pay for it once.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F

VOCAB, N, SEP = 16, 8, 1  # content tokens 2..15; 1 separates; 0 unused


def copy_batch(B: int, g: torch.Generator) -> torch.Tensor:
    content = torch.randint(2, VOCAB, (B, N), generator=g)
    return torch.cat([content, torch.full((B, 1), SEP), content], dim=1)  # (B, 2N + 1)


def copy_loss(model, seq: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=seq[:, :-1]).logits  # predict token t+1 from tokens <= t
    return F.cross_entropy(logits[:, N:].reshape(-1, VOCAB), seq[:, 1 + N:].reshape(-1))


def reverse_batch(B: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(2, VOCAB, (B, N), generator=g)  # (B, N)


def reverse_loss(model, seq: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=seq).logits  # (B, N, VOCAB)
    return F.cross_entropy(logits.reshape(-1, VOCAB), seq.flip(1).reshape(-1))


TASKS: dict[str, tuple[Callable, Callable]] = {
    "copy": (copy_batch, copy_loss), "reverse": (reverse_batch, reverse_loss)}


def train(model: torch.nn.Module, *, task: str = "copy", steps: int = 80, batch: int = 16,
          lr: float = 3e-3, seed: int = 0, aux_weight: float = 0.0, warmup: int = 0,
          cosine: bool = False) -> tuple[float, float]:
    """Train ``model`` (vocabulary :data:`VOCAB`, context >= ``2 * N + 1``) for ``steps``
    AdamW steps; return the evaluation loss before and after. ``aux_weight`` scales
    ``TxOutput.aux_loss`` into the training loss when the model has one. ``warmup``
    steps ramp the learning rate linearly up to ``lr`` (opt-in; 0: constant from the
    first step); ``cosine`` then decays it to 0 at the last step."""
    make, loss_fn = TASKS[task]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    eval_seq = make(128, torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        initial = loss_fn(model.eval(), eval_seq).item()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, functools.partial(lr_factor, warmup=warmup, steps=steps, cosine=cosine))
    for _ in range(steps):
        seq = make(batch, g)
        loss = loss_fn(model, seq)
        if aux_weight:
            out = model(input_ids=seq[:, :-1] if task == "copy" else seq)
            if out.aux_loss is not None:
                loss = loss + aux_weight * out.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        final = loss_fn(model.eval(), eval_seq).item()
    return initial, final


def lr_factor(step: int, *, warmup: int, steps: int, cosine: bool) -> float:
    """The learning rate of ``step`` (0-based) over ``lr``: linear warmup, then 1 or cosine."""
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


# A tiny decoder for the copy task; ``{attention}`` is the attention component to train.
COPY_DECODER = """
model copy_{name} {{
  vocab = 16; d_model = 64; heads = 4; layers = 2; context = 17
  embedding {{ tokens = vocab; position = learned(max_len: context) }}
  decoder(layers) {{
    residual = pre; norm = layernorm
    attention = {attention}
    ffn = mlp(hidden: 2 * d_model, act: gelu)
    final_norm = layernorm
  }}
  heads {{ lm = lm(tied: true) }}
}}
"""


def copy_spec(attention: str, name: str = "variant") -> str:
    """:data:`COPY_DECODER` with ``attention`` (spec text, e.g. ``"full(heads: heads)"``)."""
    return COPY_DECODER.format(attention=attention, name=name)


@functools.lru_cache(maxsize=None)
def full_baseline(spec_text: str, *, task: str = "copy", steps: int = 80, seed: int = 0,
                  warmup: int = 0, cosine: bool = False) -> tuple[float, float]:
    """Full attention's ``(initial, final)`` for a spec (text, built eagerly)."""
    import txdsl

    model = txdsl.build(spec_text, backend="eager", seed=seed).module
    return train(model, task=task, steps=steps, seed=seed, warmup=warmup, cosine=cosine)


def assert_trains(variant: tuple[float, float], full: tuple[float, float]) -> None:
    """The bar: below half the initial loss, and within 2x of full attention's final loss."""
    initial, final = variant
    assert final < initial / 2, f"final loss {final:.3f} is not below half of {initial:.3f}"
    assert final <= 2 * full[1], (f"final loss {final:.3f} is more than 2x full attention's "
                                  f"{full[1]:.3f}")
