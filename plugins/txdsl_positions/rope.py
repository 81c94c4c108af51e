"""Rotary position embedding, RoPE (Su et al. 2021, https://arxiv.org/abs/2104.09864).

Queries and keys are rotated by position-dependent angles, so q_m . k_n
depends on m and n only through m - n. Hugging Face Llama convention
(``rotate_half``): dimension i is paired with i + d/2 (not 2i with 2i+1),
cos/sin ``(T, d)`` with the d/2 frequencies repeated twice::

    inv_freq = 1 / theta^(2i / d),  angles = pos * inv_freq
    q' = q * cos + rotate_half(q) * sin,  rotate_half([x1, x2]) = [-x2, x1]

``fraction`` < 1 rotates only the first ``fraction * head_dim`` dimensions
(GPT-NeoX / GPT-J ``rotary_pct``, HF ``partial_rotary_factor``) and passes
the rest through. No parameters.

``scaling`` stretches the context, as Hugging Face's ``rope_type``
(``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS``), by ``factor``:

- ``linear`` (position interpolation, Chen et al. 2023,
  https://arxiv.org/abs/2306.15595): ``inv_freq / factor``;
- ``dynamic`` (NTK-aware, bloc97/emozilla 2023): for L = max position + 1 of
  this forward, at least ``original_context``, the base becomes
  ``theta * (factor * L / original_context - (factor - 1)) ** (rot / (rot - 2))``
  (HF's dynamic update for one growing sequence, but stateless: one graph);
- ``yarn`` (Peng et al. 2023, https://arxiv.org/abs/2309.00071):
  interpolated frequencies below the ``beta_slow``..``beta_fast`` rotation
  band of ``original_context``, extrapolated above, a linear ramp between;
  cos and sin are multiplied by ``attention_factor`` (default
  ``0.1 * ln(factor) + 1``);
- ``llama3`` (Llama 3.1, Meta 2024, https://arxiv.org/abs/2407.21783; HF's
  ``_compute_llama3_parameters``): with wavelengths ``2 pi / inv_freq``, those
  longer than ``original_context / low_freq_factor`` are divided by
  ``factor``, those shorter than ``original_context / high_freq_factor`` are
  kept, and the band between blends the two with
  ``s = (original_context / wavelength - low) / (high - low)``:
  ``(1 - s) inv_freq / factor + s inv_freq``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, PositionArgs
from txdsl.sdk.positions import apply_rotary, rotate_half  # noqa: F401  (rotate_half: re-export)

from .common import head_dim_of


ORIGINAL_CONTEXT = ("dynamic", "yarn", "llama3")  # the scalings that read it


class RopeArgs(PositionArgs):
    """Rotary position embedding (Su et al. 2021), Llama's rotate_half convention."""

    acts: ClassVar = "qk"
    theta: float = Field(default=10000.0, gt=1.0, description="the base of the rotation "
                         "frequencies, inv_freq_i = theta^(-2i / rotary_dim); 10000 from Su "
                         "et al. 2021 (RoFormer), as Llama 1 and 2 (Llama 3: 500000)")
    fraction: float = Field(default=1.0, gt=0.0, le=1.0)  # share of head_dim rotated
    scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = Field(
        default=None, description="context extension: none, linear (position "
        "interpolation), dynamic (NTK), yarn, llama3 (Llama 3.1's); as HF's rope_type")
    factor: float = Field(default=1.0, ge=1.0, description="how many times longer the "
                          "context becomes (HF factor)")
    original_context: int | None = Field(default=None, gt=0, description="the context "
                                         "trained on, for dynamic, yarn and llama3 "
                                         "(default: the model's context)")
    beta_fast: float = Field(default=32.0, gt=0.0, description="yarn: rotations above which "
                             "frequencies are kept (extrapolated)")
    beta_slow: float = Field(default=1.0, gt=0.0, description="yarn: rotations below which "
                             "frequencies are divided by factor (interpolated)")
    attention_factor: float | None = Field(default=None, gt=0.0, description="yarn: the "
                                           "cos/sin scale (default 0.1 * ln(factor) + 1)")
    truncate: bool = Field(default=True, description="yarn: round the ramp's bounds to "
                           "whole dimensions (HF truncate)")
    low_freq_factor: float = Field(default=1.0, gt=0.0, description="llama3: wavelengths "
                                   "above original_context / low_freq_factor are divided "
                                   "by factor (Llama 3.1: 1)")
    high_freq_factor: float = Field(default=4.0, gt=0.0, description="llama3: wavelengths "
                                    "below original_context / high_freq_factor are kept "
                                    "(Llama 3.1: 4)")

    def original(self, dims: Dims) -> int:
        context = self.original_context or dims.context
        if context is None:
            raise ArgError(f"rope scaling {self.scaling} needs the context trained on",
                           arg="original_context", hint="set original_context, or context "
                           "in the model")
        return context

    def rotary_dim(self, dims: Dims) -> int:
        return int(head_dim_of(dims, "rope") * self.fraction)

    def check(self, dims: Dims) -> None:
        hd, rot = head_dim_of(dims, "rope"), self.rotary_dim(dims)
        if hd % 2:
            raise ArgError(f"rope needs an even head_dim, got {hd}",
                           hint="dimensions are rotated in pairs")
        if rot == 0 or rot % 2:
            raise ArgError(f"rope rotates fraction ({self.fraction}) * head_dim ({hd}) = {rot} "
                           "dimensions, which must be even and positive", arg="fraction")
        if self.scaling in ORIGINAL_CONTEXT:
            self.original(dims)
        if self.scaling == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ArgError(f"llama3 rope scaling needs high_freq_factor "
                           f"({self.high_freq_factor:g}) above low_freq_factor "
                           f"({self.low_freq_factor:g})", arg="high_freq_factor",
                           hint="Llama 3.1 uses low_freq_factor: 1.0, high_freq_factor: 4.0")
        if self.scaling == "dynamic" and rot == 2:
            raise ArgError("dynamic rope scaling needs more than 2 rotated dimensions",
                           arg="scaling", hint="its exponent is rot / (rot - 2)")


class RotaryPositions(nn.Module):
    acts = "qk"

    def __init__(self, *, rotary_dim: int, theta: float = 10000.0, scaling: str | None = None,
                 factor: float = 1.0, original_context: int | None = None,
                 beta_fast: float = 32.0, beta_slow: float = 1.0,
                 attention_factor: float | None = None, truncate: bool = True,
                 low_freq_factor: float = 1.0, high_freq_factor: float = 4.0):
        super().__init__()
        if rotary_dim % 2:
            raise ValueError(f"rotary_dim ({rotary_dim}) must be even")
        self.rotary_dim, self.theta, self.scaling, self.factor = rotary_dim, theta, scaling, factor
        self.original_context = original_context
        exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim  # (rot/2,)
        inv_freq = 1.0 / theta ** exponents
        self.attention_scale = 1.0
        if scaling == "linear":
            inv_freq = inv_freq / factor
        elif scaling == "yarn":
            inv_freq = yarn_inv_freq(theta ** exponents, rotary_dim, theta, factor,
                                     original_context, beta_fast, beta_slow, truncate)
            self.attention_scale = (attention_factor if attention_factor is not None
                                    else 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0)
        elif scaling == "llama3":
            inv_freq = llama3_inv_freq(inv_freq, factor, original_context, low_freq_factor,
                                       high_freq_factor)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("exponents", exponents, persistent=False)

    @classmethod
    def from_args(cls, args: RopeArgs, ctx: BuildContext) -> "RotaryPositions":
        args.check(ctx.dims)
        original = args.original(ctx.dims) if args.scaling in ORIGINAL_CONTEXT else None
        return cls(rotary_dim=args.rotary_dim(ctx.dims), theta=args.theta, scaling=args.scaling,
                   factor=args.factor, original_context=original, beta_fast=args.beta_fast,
                   beta_slow=args.beta_slow, attention_factor=args.attention_factor,
                   truncate=args.truncate, low_freq_factor=args.low_freq_factor,
                   high_freq_factor=args.high_freq_factor)

    def frequencies(self, positions: Tensor) -> Tensor:
        """The ``(rot/2,)`` inverse frequencies of this forward (dynamic: from its positions)."""
        if self.scaling != "dynamic":
            return self.inv_freq.float()
        length = (positions.max() + 1).to(torch.float64).clamp(min=self.original_context)
        f, rot = self.factor, self.rotary_dim
        base = self.theta * (f * length / self.original_context - (f - 1)) ** (rot / (rot - 2))
        return (1.0 / base.to(torch.float32) ** self.exponents).float()  # as HF: float32 pow

    def cos_sin(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Positions ``(..., T)`` -> cos, sin ``(..., T, rotary_dim)``, computed in float32.

        The stack calls this once per forward with ``(B|1, T)`` positions."""
        inv_freq = self.frequencies(positions)
        angles = positions.to(torch.float32)[..., None] * inv_freq  # (..., T, rot/2)
        emb = torch.cat((angles, angles), dim=-1)  # (..., T, rot)
        cos, sin = emb.cos(), emb.sin()
        if self.attention_scale != 1.0:  # yarn's mscale
            cos, sin = cos * self.attention_scale, sin * self.attention_scale
        return cos.to(dtype), sin.to(dtype)

    def rotate(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate ``(B, H, T, hd)`` queries and keys at ``positions`` ``(T,)`` or ``(B, T)``."""
        cos, sin = self.cos_sin(positions, q.dtype)  # (T, rot) or (B, T, rot)
        if cos.dim() == 3:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, rot): broadcast over heads
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.rotate(q, k, positions)

    def extra_repr(self) -> str:
        scaling = f", scaling={self.scaling}, factor={self.factor:g}" \
            if self.scaling is not None else ""
        return f"rotary_dim={self.rotary_dim}, theta={self.theta:g}{scaling}"


def llama3_inv_freq(inv_freq: Tensor, factor: float, original: int, low: float,
                    high: float) -> Tensor:
    """Llama 3.1's frequencies: long wavelengths interpolated, short ones kept, a smooth
    blend between (HF ``_compute_llama3_parameters``, the same float32 arithmetic)."""
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelength - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    middle = ~(wavelength < original / high) * ~(wavelength > original / low)
    return torch.where(middle, blended, scaled)


def yarn_inv_freq(pos_freqs: Tensor, dim: int, theta: float, factor: float, original: int,
                  beta_fast: float, beta_slow: float, truncate: bool) -> Tensor:
    """YaRN's blend (Peng et al. 2023, eq. 17-19) of interpolated and extrapolated frequencies."""
    def correction_dim(rotations: float) -> float:  # the dimension making ``rotations`` turns
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no empty ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp  # (rot/2,): 1 keeps the frequency, 0 divides it by factor
    return (1.0 / (factor * pos_freqs)) * (1 - extrapolate) + (1.0 / pos_freqs) * extrapolate
