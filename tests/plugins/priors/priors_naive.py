"""Shared pieces of the priors tests: building a kind alone, and the per-head naive forms."""

from __future__ import annotations

import torch

import txdsl_attention
import txdsl_positions
from txdsl.plugins import load_registry
from txdsl.sdk import Dims
from txdsl.sdk.mask import AttentionMask
from txdsl.sdk.targets import BuildContext

REGISTRY = load_registry({"attention": txdsl_attention, "positions": txdsl_positions})
D, H, B, T = 32, 4, 2, 7
DIMS = Dims(d_model=D, width=D, embed_size=D, context=64)
CAUSAL = AttentionMask(causal=True)
MIN = torch.finfo(torch.float32).min


def build(kind: str, seed: int = 0, check: bool = True, **args):
    """``kind`` built alone (its ``example`` arguments, then ``args``), weights scaled up."""
    cls = REGISTRY.args("attention", kind)
    parsed = cls.model_validate({"heads": H, **cls.example, **args})
    if check:  # a short max_len (below the context of DIMS) on purpose in some tests
        parsed.check(DIMS)
    torch.manual_seed(seed)
    m = REGISTRY.implementations("attention", kind)[0].build(parsed, BuildContext(dims=DIMS))
    with torch.no_grad():  # larger weights than the init, so a mistake shows
        for name, p in m.named_parameters():
            if name.endswith("weight") and "proj" in name:
                p.mul_(2.0)
    return m.eval()


def full_like(m, **args):
    """``full`` attention (reference) with ``m``'s projection weights."""
    ref = build("full", **args)
    ref.load_state_dict({k: v for k, v in m.state_dict().items() if k in ref.state_dict()})
    return ref


def heads(m, x):
    """Per-head ``(B, T, hd)`` queries, keys, values of a standard attention, GQA by slicing."""
    hd, g = m.head_dim, m.heads // m.kv_heads
    q, k, v = m.q_proj(x), m.k_proj(x), m.v_proj(x)
    sl = lambda t, i: t[..., i * hd:(i + 1) * hd]  # noqa: E731
    return ([sl(q, h) for h in range(m.heads)], [sl(k, h // g) for h in range(m.heads)],
            [sl(v, h // g) for h in range(m.heads)])


def causal_softmax(s):
    """``(B, T, T)`` scores, causal: a row's later keys get no weight."""
    n = s.shape[-1]
    allowed = torch.ones(n, n).tril().bool()
    return torch.softmax(s.masked_fill(~allowed, MIN), dim=-1)


def finish(m, outs):
    """Concatenate the heads' ``(B, T, hd)`` outputs and project."""
    return m.out_proj(torch.cat(outs, dim=-1))
