"""The computing forms of linearized attention, on feature-mapped queries and keys.

All take ``qf`` ``(B, H, T, F)`` and ``kf`` ``(B, H, T, F)`` (feature maps
already applied, padded keys' features zeroed), ``v`` ``(B, H, T, dv)`` and
an initial recurrent state ``(S0, z0)`` (``(B, H, F, dv)``, ``(B, H, F)``;
``None``: zeros), and return ``(out, S, z)``: the ``(B, H, T, dv)`` output
and the state after the last token. Causal linear attention is

    S_t = S_{t-1} + phi(k_t) v_t^T,  z_t = z_{t-1} + phi(k_t),
    out_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + eps)

(Katharopoulos et al. 2020, eq. 10-12). Three forms compute it:

- :func:`recurrent`: the loop above, token by token (the reference, as
  flash-linear-attention's ``fla/ops/linear_attn/naive.py``);
- :func:`prefix_sum`: the same with ``cumsum`` over the outer products
  (``(B, H, T, F, dv)`` memory);
- :func:`chunked`: fla's ``chunk_*`` scheme: dense masked products inside a
  chunk of ``C`` tokens, the recurrent state carried between chunks.

:func:`bidirectional` is the non-causal form (every query sees every key);
:func:`masked` the explicit ``T x S`` form under any mask (packed documents,
mask patterns): exact, but quadratic like softmax attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6  # in the denominator: a query that sees no key reads 0, not NaN

State = tuple[Tensor, Tensor]


def _initial(qf: Tensor, v: Tensor, state: State | None) -> State:
    if state is not None:
        return state
    B, H, _, Fd = qf.shape
    return (qf.new_zeros(B, H, Fd, v.shape[-1]), qf.new_zeros(B, H, Fd))


def bidirectional(qf: Tensor, kf: Tensor, v: Tensor) -> Tensor:
    """``phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1)``; q ``(B, H, T, F)``, k/v over S keys."""
    kv = torch.einsum("bhsf,bhsd->bhfd", kf, v)  # (B, H, F, dv)
    num = torch.einsum("bhtf,bhfd->bhtd", qf, kv)  # (B, H, T, dv)
    den = torch.einsum("bhtf,bhf->bht", qf, kf.sum(2))  # (B, H, T)
    return num / (den[..., None] + EPS)


def masked(qf: Tensor, kf: Tensor, v: Tensor, allowed: Tensor) -> Tensor:
    """``(phi(Q) phi(K)^T * allowed) V`` over its row sums; ``allowed`` ``(B|1, H|1, T, S)``
    bool. The definition itself, O(T S): for masks no prefix sum can follow."""
    s = torch.einsum("bhtf,bhsf->bhts", qf, kf) * allowed.to(qf.dtype)  # (B, H, T, S)
    return (s @ v) / (s.sum(-1, keepdim=True) + EPS)  # (B, H, T, dv)


def recurrent(qf: Tensor, kf: Tensor, v: Tensor, state: State | None = None
              ) -> tuple[Tensor, Tensor, Tensor]:
    S, z = _initial(qf, v, state)
    outs = []
    for t in range(qf.shape[2]):
        S = S + kf[:, :, t, :, None] * v[:, :, t, None, :]  # (B, H, F, dv)
        z = z + kf[:, :, t]  # (B, H, F)
        num = torch.einsum("bhf,bhfd->bhd", qf[:, :, t], S)
        den = (qf[:, :, t] * z).sum(-1, keepdim=True)  # (B, H, 1)
        outs.append(num / (den + EPS))
    return torch.stack(outs, dim=2), S, z  # (B, H, T, dv)


def prefix_sum(qf: Tensor, kf: Tensor, v: Tensor, state: State | None = None
               ) -> tuple[Tensor, Tensor, Tensor]:
    S0, z0 = _initial(qf, v, state)
    S = S0[:, :, None] + torch.cumsum(kf[..., :, None] * v[..., None, :], dim=2)  # (B,H,T,F,dv)
    z = z0[:, :, None] + torch.cumsum(kf, dim=2)  # (B, H, T, F)
    num = torch.einsum("bhtf,bhtfd->bhtd", qf, S)
    den = (qf * z).sum(-1, keepdim=True)
    return num / (den + EPS), S[:, :, -1], z[:, :, -1]


def chunked(qf: Tensor, kf: Tensor, v: Tensor, state: State | None = None, *,
            chunk: int = 16) -> tuple[Tensor, Tensor, Tensor]:
    """Intra-chunk dense (``C x C`` lower-triangular products), inter-chunk recurrent."""
    S0, z0 = _initial(qf, v, state)
    B, H, T, Fd = qf.shape
    dv = v.shape[-1]
    pad = (-T) % chunk  # padded keys have zero features: they add nothing
    if pad:
        qf, kf, v = (F.pad(t, (0, 0, 0, pad)) for t in (qf, kf, v))
    N = qf.shape[2] // chunk
    qc, kc = qf.view(B, H, N, chunk, Fd), kf.view(B, H, N, chunk, Fd)
    vc = v.view(B, H, N, chunk, dv)
    kv = torch.einsum("bhncf,bhncd->bhnfd", kc, vc)  # (B, H, N, F, dv): each chunk's sum
    ksum = kc.sum(3)  # (B, H, N, F)
    # The state before each chunk: S0 plus every earlier chunk's contribution.
    S_before = S0[:, :, None] + torch.cumsum(kv, dim=2) - kv  # (B, H, N, F, dv)
    z_before = z0[:, :, None] + torch.cumsum(ksum, dim=2) - ksum  # (B, H, N, F)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=qf.device).tril()
    scores = torch.einsum("bhncf,bhnsf->bhncs", qc, kc) * causal  # (B, H, N, C, C)
    num = torch.einsum("bhncs,bhnsd->bhncd", scores, vc) + torch.einsum(
        "bhncf,bhnfd->bhncd", qc, S_before)  # (B, H, N, C, dv)
    den = scores.sum(-1) + torch.einsum("bhncf,bhnf->bhnc", qc, z_before)  # (B, H, N, C)
    out = (num / (den[..., None] + EPS)).reshape(B, H, N * chunk, dv)[:, :, :T]
    return out, S0 + kv.sum(2), z0 + ksum.sum(2)
