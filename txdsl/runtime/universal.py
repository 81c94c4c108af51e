"""Adaptive computation time over a stack's layers: the Universal Transformer's recurrence.

The Universal Transformer (Dehghani, Gouws, Vinyals, Uszkoreit & Kaiser 2019,
https://arxiv.org/abs/1807.03819) applies one shared layer (``share = all``) up to
``N`` times (the stack's layer count) and lets every position stop on its own with
adaptive computation time (Graves 2016, https://arxiv.org/abs/1603.08983). Per step
``n`` (as tensor2tensor's ``ut_act``, with Graves' rule that the last step halts every
position still running)::

    h      = h + timing(n)                     # the step's sinusoidal signal (timestep)
    p      = sigmoid(w . h + b)                # (B, T): the halting unit
    halted = sum_p + p > threshold  or  n = N - 1      (among positions still running)
    w_n    = p         while running,  R = 1 - sum_p at the halting step,  0 after
    h      = layer_n(h);   y = y + w_n h
    ponder = mean over real positions of N(t) + R(t)    -> aux_losses["ponder"] * weight

Every step runs for every position (one graph of fixed size: no data-dependent exit,
so ``fullgraph`` compilation holds); a halted position's weight is 0, so its output no
longer changes. Each step has its own decode state (the stack's cache has one per layer
index), and halting depends on the position alone, so decoding equals the full forward.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn


def timing_signal(step: int, d_model: int, device=None, dtype=torch.float32) -> Tensor:
    """The sinusoidal signal of ``step`` ``(d_model,)``: sines then cosines (tensor2tensor's
    ``add_step_timing_signal``, ``get_timing_signal_1d`` at one position)."""
    half = d_model // 2
    inv = torch.exp(torch.arange(half, dtype=torch.float32, device=device)
                    * -(math.log(1.0e4) / max(half - 1, 1)))
    angle = step * inv
    signal = torch.cat([angle.sin(), angle.cos()])
    if d_model % 2:
        signal = torch.cat([signal, signal.new_zeros(1)])
    return signal.to(dtype)


class AdaptiveComputationTime(nn.Module):
    def __init__(self, *, d_model: int, threshold: float = 0.99, ponder: float = 0.01,
                 timestep: bool = True, bias: float = 1.0):
        super().__init__()
        # p = sigmoid(w . h + b); plain parameters, so the model's Linear init keeps b
        self.halting_weight = nn.Parameter(torch.randn(d_model) * 0.02)  # (d,)
        self.halting_bias = nn.Parameter(torch.tensor(float(bias)))
        self.threshold, self.ponder, self.timestep = threshold, ponder, timestep

    def forward(self, x: Tensor, steps: int, step: Callable[[int, Tensor], Tensor], *,
                real: Tensor | None = None, state=None,
                hidden: list[Tensor] | None = None) -> Tensor:
        """``x`` ``(B, T, d)``; ``step(n, h)`` applies layer ``n``; ``real`` ``(B, T)`` bool
        (padding excluded from the ponder cost). Returns the weighted sum of the states."""
        B, T, d = x.shape
        total = x.new_zeros(B, T)  # sum of p while running
        remainder = x.new_zeros(B, T)
        updates = x.new_zeros(B, T)  # N(t)
        out = torch.zeros_like(x)
        h = x
        for n in range(steps):
            if self.timestep:
                h = h + timing_signal(n, d, x.device, x.dtype)
            if hidden is not None:
                hidden.append(h)
            p = torch.sigmoid(h @ self.halting_weight.to(h.dtype)
                              + self.halting_bias.to(h.dtype))  # (B, T)
            running = (total < 1.0).to(x.dtype)
            if n == steps - 1:  # the last step halts whoever is still running
                new_halted, still = running, torch.zeros_like(running)
            else:
                over = (total + p * running > self.threshold).to(x.dtype)
                new_halted, still = over * running, (1 - over) * running
            total = total + p * still
            remainder = remainder + new_halted * (1 - total)
            total = total + new_halted * remainder
            updates = updates + still + new_halted
            weight = p * still + new_halted * remainder  # (B, T)
            h = step(n, h)
            out = out + weight[..., None] * h
        if state is not None:
            cost = updates + remainder  # (B, T)
            if real is not None:
                keep = real.to(cost.dtype)
                mean = (cost * keep).sum() / keep.sum().clamp(min=1)
            else:
                mean = cost.mean()
            state.add_loss("ponder", self.ponder * mean)
        return out

    def extra_repr(self) -> str:
        return (f"threshold={self.threshold}, ponder={self.ponder}, "
                f"timestep={self.timestep}")
