"""Nyströmformer (Xiong et al. 2021, "Nyströmformer: A Nyström-Based Algorithm for
Approximating Self-Attention", https://arxiv.org/abs/2102.03902).

``m`` landmarks (segment means of the queries and of the keys) approximate the
softmax matrix through the Nyström method::

    F = softmax(Q K~^T)   A = softmax(Q~ K~^T)   B = softmax(Q~ K^T)
    head = F A^+ (B V)  [+ depthwise conv over V]

with ``A^+`` the Moore-Penrose pseudo-inverse by the iteration of the paper's
code (``Z <- Z (13 I - AZ (15 I - AZ (7 I - AZ))) / 4`` from
``Z_0 = A^T / (max column sum * ...)``), and the scale ``1/sqrt(d)`` split
as ``d^-1/4`` on Q and on K as there. Segments are contiguous runs of about
``T / m`` tokens (any length; the paper's code pads to a multiple); a padded
key joins no landmark and is masked in ``B``. With ``m`` = the length every
landmark is one token and the result is softmax attention (up to the
iteration's convergence). Not causal: landmarks summarise the whole sequence.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import Dims
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv

from .common import NO_DECODE, key_weights


class NystromArgs(AttentionArgs):
    """Nyströmformer (Xiong et al. 2021): landmarks and an iterative pseudo-inverse."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk"})
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "its landmarks are means over the whole sequence, future positions included",
        "decode": NO_DECODE,
    }

    landmarks: PositiveInt = Field(default=64, description="number of landmarks m (segment "
                                   "means of Q and K); clamped to the sequence length")
    iterations: PositiveInt = Field(default=6, description="Newton-Schulz iterations of the "
                                    "pseudo-inverse (the paper uses 6)")
    conv: int = Field(default=0, ge=0, description="kernel size of the depthwise convolution "
                      "over V added to the output (the paper's code uses 33); 0 = none")

    def param_count(self, dims: Dims) -> int:
        return super().param_count(dims) + self.heads * self.conv  # Conv2d(H, H, (conv, 1)) no bias

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, m = self.head_size(dims), min(self.landmarks, seq_len)
        proj = 2 * AttentionArgs.param_count(self, dims)
        kernels = 2 * 2 * self.heads * hd * m * 2  # F (T, m) and B (m, T) with their products
        pinv = self.heads * (2 * m ** 3 * 4 * self.iterations + 2 * m * m * hd) // seq_len
        return proj + kernels + pinv + 2 * self.heads * hd * self.conv


def segment_means(x: Tensor, m: int, weights: Tensor | None) -> Tensor:
    """``(B, H, L, d)`` -> ``(B, H, m, d)``: the (weighted) mean of each of ``m`` contiguous segments."""
    L = x.shape[2]
    seg = torch.arange(L, device=x.device) * m // L  # (L,) segment of each position
    onehot = (seg[None, :] == torch.arange(m, device=x.device)[:, None]).to(x.dtype)  # (m, L)
    w = onehot[None, None]  # (1, 1, m, L)
    if weights is not None:
        w = w * weights.transpose(-1, -2)  # (B, 1, m, L)
    return torch.einsum("bhml,bhld->bhmd", w.expand(x.shape[0], -1, -1, -1), x) \
        / w.sum(-1, keepdim=True).clamp(min=1.0)


def iterative_inverse(a: Tensor, iterations: int) -> Tensor:
    """The Moore-Penrose pseudo-inverse of ``a`` ``(..., m, m)`` (Xiong et al.'s iteration)."""
    eye = torch.eye(a.shape[-2], device=a.device, dtype=a.dtype)
    z = a.transpose(-1, -2) / a.sum(dim=-2).amax(dim=-1)[..., None, None]  # (..., m, m)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


class NystromAttention(Attention):
    """Nyström approximation of softmax attention with ``landmarks`` segment means."""

    no_kv_cache = NO_DECODE

    def __init__(self, *, landmarks: int, iterations: int, conv: int, **base):
        super().__init__(**base)
        self.landmarks, self.iterations = landmarks, iterations
        self.conv = (nn.Conv2d(self.heads, self.heads, (conv, 1), padding=(conv // 2, 0),
                               bias=False, groups=self.heads) if conv else None)

    @classmethod
    def from_args(cls, args: NystromArgs, ctx) -> "NystromAttention":
        return cls(landmarks=args.landmarks, iterations=args.iterations, conv=args.conv,
                   **cls.projections(args, ctx))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        dtype, (B, _, T, _), S = q.dtype, q.shape, k.shape[2]
        groups = self.heads // self.kv_heads
        q, k, v = q.float(), repeat_kv(k, groups).float(), repeat_kv(v, groups).float()
        root = self.scale ** 0.5
        q, k = q * root, k * root  # the scale split between Q and K, as the paper's code
        w = key_weights(mask, B, S, k.dtype, k.device)  # (B, 1, S, 1)
        if w is not None:
            k, v = k * w, v * w
        qw = w if (w is not None and T == S and not mask.cross) else None  # self: padded queries too
        m_q, m_k = min(self.landmarks, T), min(self.landmarks, S)
        q_l, k_l = segment_means(q, m_q, qw), segment_means(k, m_k, w)  # (B, H, m, hd)
        f = torch.softmax(q @ k_l.transpose(-1, -2), dim=-1)  # (B, H, T, m_k)
        a = torch.softmax(q_l @ k_l.transpose(-1, -2), dim=-1)  # (B, H, m_q, m_k)
        b = q_l @ k.transpose(-1, -2)  # (B, H, m_q, S)
        if w is not None:
            b = b.masked_fill(w.transpose(-1, -2) == 0, masked_fill_value(b.dtype))
        b = torch.softmax(b, dim=-1)
        out = f @ iterative_inverse(a, self.iterations) @ (b @ v)  # (B, H, T, hd)
        if self.conv is not None and T == S:
            out = out + self.conv(v)
        return out.to(dtype)
