"""``lsh``: Reformer's shared-QK attention within locality-sensitive-hash buckets.

Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", 2020,
https://arxiv.org/abs/2001.04451. Per head and hashing round r:

1. shared-QK: one projection gives the queries; the keys are the same vectors,
   unit-normalised (k_j = q_j / |q_j|);
2. hash: h(x) = argmax([xR; -xR]) with a random rotation R ``(hd, buckets/2)``
   (angular LSH), drawn once per build from ``seed`` (a buffer, not a parameter);
   the i-th ``lsh`` layer a build constructs draws from ``seed + i`` (``layer_seeds``),
   so layers don't share rotations (Hugging Face with a fixed ``hash_seed`` reseeds
   every layer alike: ``layer_seeds: false``);
3. sort the positions by (bucket, position), cut the sorted order into chunks of
   ``chunk`` and let each chunk attend to itself and ``chunks_before`` chunks
   back (``chunks_after`` forward), the causal/padding mask applied on the
   original positions;
4. a query never attends to itself unless nothing else is visible (its score is
   set to -1e5, masked ones to -1e9, as in the paper and Hugging Face);
5. rounds are combined by their log-sum-exp: out = sum_r softmax_r(lse_r) out_r.

Semantics follow ``transformers``' ``LSHSelfAttention`` (tested equal): a
sequence no longer than ``chunk`` gets plain shared-QK attention (one chunk);
within a chunk keys of other buckets are not masked; the chunk window wraps
around (the first chunk looks back to the last); a length not a multiple of
``chunk`` is padded with masked positions hashed to an extra last bucket (as
Hugging Face hashes padding tokens). Because the sorted order depends on all
positions, a past query's output can depend on which *future* tokens share its
chunk (never on their values): causal in value, not in key selection.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeInt, PositiveInt
from torch import Tensor

from txdsl.sdk import ArgError, AttentionArgs, Dims
from txdsl.sdk.args import linear_params
from txdsl.sdk.attention import Attention

from .common import work_dtype

LAYER_COUNT = "lsh_layers"  # BuildContext.shared: how many lsh layers were built
MASKED, SELF = -1e9, -1e5  # Hugging Face's float32 mask values (self: only if nothing else)


class LSHArgs(AttentionArgs):
    """Reformer LSH attention (Kitaev et al. 2020): shared-QK, hashed, sorted, chunked."""

    accepts: ClassVar[frozenset[str]] = frozenset()  # positions act at the input (Reformer)
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "shared-QK hashing puts queries and keys in one sorted sequence",
        "decode": "the buckets are sorted over the whole sequence (no incremental state)",
    }

    buckets: PositiveInt = Field(8, description="hash buckets per round: 1 (no hashing) or "
                                                "even (argmax over [xR; -xR])")
    rounds: PositiveInt = Field(1, description="hashing rounds (independent rotations), "
                                               "combined by log-sum-exp")
    chunk: PositiveInt = Field(64, description="chunk length of the sorted sequence; a "
                                               "sequence no longer than this is one chunk")
    chunks_before: NonNegativeInt = Field(1, description="chunks back each chunk attends to")
    chunks_after: NonNegativeInt = Field(0, description="chunks forward each chunk attends to")
    seed: int = Field(0, description="seed of the random rotations (fixed per build)")
    layer_seeds: bool = Field(True, description="the i-th lsh layer of a build uses seed + i "
                              "(its own rotations); false: every layer uses seed (as Hugging "
                              "Face's fixed hash_seed)")
    scale: float | None = Field(None, description="score scale; default 1 (queries against "
                                                  "unit-length keys, as Reformer)")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if self.buckets > 1 and self.buckets % 2:
            raise ArgError(f"buckets ({self.buckets}) must be 1 or even", arg="buckets",
                           hint="angular LSH takes the argmax over [xR; -xR]: an even count")
        if self.kv_heads is not None and self.kv_heads != self.heads:
            raise ArgError(f"kv_heads ({self.kv_heads}) must equal heads ({self.heads}): "
                           "keys are the queries (shared-QK)", arg="kv_heads")

    def param_count(self, dims: Dims) -> int:
        hd, d = self.head_size(dims), dims.width
        return 2 * linear_params(d, self.heads * hd, self.bias) + linear_params(
            self.heads * hd, d, self.bias)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, h = self.head_size(dims), self.heads
        window = min(seq_len, self.chunk * (1 + self.chunks_before + self.chunks_after))
        hashing = 2 * h * hd * (self.buckets // 2) * self.rounds
        return 2 * self.param_count(dims) + hashing + 2 * 2 * h * hd * window * self.rounds


def look_adjacent(x: Tensor, before: int, after: int) -> Tensor:
    """``(B, H, N, c, ...)`` -> ``(B, H, N, c * (1 + before + after), ...)``: each chunk
    with its neighbours, wrapping around (Hugging Face's ``_look_adjacent``)."""
    parts = [torch.roll(x, shifts=-i, dims=2) for i in range(-before, after + 1)]
    return torch.cat(parts, dim=3)


class LSHAttention(Attention):
    """Shared-QK LSH attention; ``q_proj`` is Reformer's ``query_key``, no ``k_proj``."""

    no_kv_cache = "the buckets are sorted over the whole sequence (no incremental state)"

    def __init__(self, *, buckets: int, rounds: int, chunk: int, chunks_before: int,
                 chunks_after: int, seed: int, **base):
        base["k_proj"] = None
        super().__init__(**base)
        self.buckets, self.rounds, self.chunk = buckets, rounds, chunk
        self.before, self.after = chunks_before, chunks_after
        gen = torch.Generator().manual_seed(seed)  # same draw as torch.manual_seed(seed); randn
        rotations = torch.randn(self.heads, self.head_dim, rounds, max(buckets // 2, 1),
                                generator=gen)
        self.register_buffer("rotations", rotations, persistent=False)  # (H, hd, R, n/2)

    @classmethod
    def from_args(cls, args: LSHArgs, ctx) -> "LSHAttention":
        base = cls.projections(args, ctx)
        base["scale"] = args.scale if args.scale is not None else 1.0  # unit keys, unscaled
        layer = ctx.shared.get(LAYER_COUNT, 0)  # lsh layers this build constructed so far
        ctx.shared[LAYER_COUNT] = layer + 1
        return cls(buckets=args.buckets, rounds=args.rounds, chunk=args.chunk,
                   chunks_before=args.chunks_before, chunks_after=args.chunks_after,
                   seed=args.seed + (layer if args.layer_seeds else 0), **base)

    def hash(self, qk: Tensor) -> Tensor:
        """``(B, H, T, hd)`` -> buckets ``(B, H, R, T)`` in ``[0, buckets)``."""
        B, H, T, _ = qk.shape
        if self.buckets == 1:
            return torch.zeros(B, H, self.rounds, T, dtype=torch.long, device=qk.device)
        rotated = torch.einsum("bhtd,hdrk->bhrtk", qk.detach(), self.rotations.to(qk.dtype))
        return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask, position=None,
                cache=None, state=None) -> Tensor:
        if memory is not None or cache is not None:
            raise ValueError("lsh attention has no cross-attention or decode state "
                             "(see LSHArgs.unsupported)")
        B, T, _ = x.shape
        qk = self.split(self.q_proj(x), self.heads)  # (B, H, T, hd)
        v = self.split(self.v_proj(x), self.heads)  # (B, H, T, hd)
        work = work_dtype(qk.dtype)
        y = self.attend_lsh(qk.to(work), v.to(work), mask).to(x.dtype)  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d_model)

    def scores(self, q: Tensor, k: Tensor, allowed: Tensor | None, q_pos: Tensor,
               k_pos: Tensor) -> Tensor:
        """Shared-QK scores with the mask and the self rule: q ``(..., c, hd)``,
        k ``(..., L, hd)`` (raw; normalised here), positions ``(..., c, 1)``/``(..., 1, L)``."""
        keys = k * torch.rsqrt(k.pow(2).mean(-1, keepdim=True) + 1e-6) / k.shape[-1] ** 0.5
        s = (q @ keys.transpose(-1, -2)) * self.scale  # (..., c, L)
        if allowed is not None:
            s = torch.where(allowed, s, torch.full_like(s, MASKED))
        return torch.where(q_pos == k_pos, torch.full_like(s, SELF), s)

    def attend_lsh(self, qk: Tensor, v: Tensor, mask) -> Tensor:
        B, H, T, hd = qk.shape
        dev, c, R = qk.device, self.chunk, self.rounds
        if T <= c:  # one chunk: shared-QK attention over the whole sequence
            pos = torch.arange(T, device=dev)
            s = self.scores(qk, qk, mask.dense(T, T, device=dev), pos[:, None], pos[None, :])
            w = F.dropout(torch.softmax(s, dim=-1), p=self.dropout, training=self.training)
            return w @ v  # (B, H, T, hd)
        Tp = -(-T // c) * c  # padded to whole chunks
        qk_p, v_p = F.pad(qk, (0, 0, 0, Tp - T)), F.pad(v, (0, 0, 0, Tp - T))  # (B, H, Tp, hd)
        buckets = self.hash(qk_p)  # (B, H, R, Tp)
        real = torch.arange(Tp, device=dev) < T  # (Tp,)
        if mask.key_padding is not None:
            real = real & F.pad(mask.key_padding, (0, Tp - T), value=False)[:, None, None, :]
        buckets = torch.where(real, buckets, self.buckets)  # padding: an extra last bucket
        offsets = torch.arange(R, device=dev)[:, None] * (self.buckets + 1)  # (R, 1)
        order = (buckets + offsets).flatten(2) * (R * Tp) + torch.arange(R * Tp, device=dev)
        sorted_idx = order.argsort(dim=-1)  # (B, H, R*Tp)
        pos = sorted_idx % Tp  # original positions, in sorted order
        N = R * Tp // c
        gather = pos[..., None].expand(-1, -1, -1, hd)
        q_s = qk_p.gather(2, gather).view(B, H, N, c, hd)  # (B, H, N, c, hd)
        v_s = v_p.gather(2, gather).view(B, H, N, c, hd)
        k_s = look_adjacent(q_s, self.before, self.after)  # (B, H, N, L, hd)
        v_s = look_adjacent(v_s, self.before, self.after)
        q_pos = pos.view(B, H, N, c)[..., None]  # (B, H, N, c, 1)
        k_pos = look_adjacent(pos.view(B, H, N, c), self.before, self.after)[..., None, :]
        b = torch.arange(B, device=dev).view(B, 1, 1, 1, 1)
        h = torch.arange(H, device=dev).view(1, H, 1, 1, 1)
        allowed = k_pos < T  # (B, H, N, 1, L): the padding positions are never keys
        if not mask.is_empty:
            allowed = allowed & mask.allows(b, h, q_pos.clamp(max=T - 1),
                                            k_pos.clamp(max=T - 1), T, T)
        s = self.scores(q_s, k_s, allowed, q_pos, k_pos)  # (B, H, N, c, L)
        lse = torch.logsumexp(s, dim=-1, keepdim=True)  # (B, H, N, c, 1)
        w = F.dropout(torch.exp(s - lse), p=self.dropout, training=self.training)
        out = (w @ v_s).flatten(2, 3)  # (B, H, R*Tp, hd), sorted order
        lse = lse.flatten(2)  # (B, H, R*Tp)
        undo = torch.empty_like(sorted_idx).scatter_(
            -1, sorted_idx, torch.arange(R * Tp, device=dev).expand_as(sorted_idx))
        out = out.gather(2, undo[..., None].expand(-1, -1, -1, hd)).view(B, H, R, Tp, hd)
        lse = lse.gather(2, undo).view(B, H, R, Tp)
        weights = torch.softmax(lse, dim=2)[..., None]  # (B, H, R, Tp, 1): rounds by lse
        return (out * weights).sum(dim=2)[:, :, :T]  # (B, H, T, hd)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, buckets={self.buckets}, rounds={self.rounds}, "
                f"chunk={self.chunk}")
