"""Every implementation of every sparse kind == its ``reference``, forward and backward.

``blocked`` is run with 4-slot tiles on 37 tokens, so it really gathers a few tiles
per query tile (and a dense pass for global queries); ``flex`` is gradient-free on
CPU (torch 2.13), so only its forward is compared. bf16 is checked too. Graph breaks:
``torch.compile(backend="aot_eager", fullgraph=True)`` of ``blocked`` and ``sdpa``.
"""

from __future__ import annotations

import pytest
import torch

from txdsl.sdk import BuildContext, Dims
from txdsl.sdk.attention import StackState
from txdsl.sdk.mask import AttentionMask
from txdsl_attention.sparse import (KINDS, BlockedSparseAttention, FlexSparseAttention,
                                    SDPASparseAttention, SparseAttention)
from txdsl_attention.sparse.longformer import (LongformerBlocked, LongformerFlex,
                                               LongformerReference, LongformerSDPA)
from txdsl_attention.sparse.unions import LongformerArgs

D, H, B, T = 32, 4, 2, 37
DIMS = Dims(d_model=D, width=D, embed_size=D, context=64)
CASES = {
    "local": {"window": 5},
    "dilated": {"window": 3, "dilation": 2},
    "strided": {"stride": 5},
    "fixed": {"stride": 6, "summary": 2},
    "block": {"block": 6, "reach": 1},
    "global": {"global_tokens": 2, "positions": "20"},
    "random": {"random": 2, "random_block": 4},
    "sparse": {"window": 3, "block": 4, "reach": 1, "global_tokens": 4, "random": 1},
    "longformer": {"window": 4, "global_tokens": 1},
}
IMPLS = {"sdpa": (SDPASparseAttention, LongformerSDPA),
         "blocked": (BlockedSparseAttention, LongformerBlocked),
         "flex": (FlexSparseAttention, LongformerFlex)}


def build(kind: str, impl: str | None, causal: bool):
    args_cls = KINDS.get(kind, LongformerArgs)
    args = args_cls(heads=H, chunk=4, **CASES[kind])
    if causal and kind == "sparse":
        args = args_cls(heads=H, chunk=4, window=3, block=4, reach=1, global_tokens=4, random=1)
    longformer = kind == "longformer"
    cls = (LongformerReference if longformer else SparseAttention) if impl is None else \
        IMPLS[impl][int(longformer)]
    torch.manual_seed(0)
    return cls.from_args(args, BuildContext(dims=DIMS))


def padding() -> torch.Tensor:
    pad = torch.ones(B, T, dtype=torch.bool)
    pad[0, T - 5:] = False
    pad[1, :3] = False
    return pad


def run(m, x, causal, state=None):
    return m(x, mask=AttentionMask(causal=causal, key_padding=padding()), state=state)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("kind", sorted(CASES))
def test_implementation_equals_reference(kind, impl, causal):
    ref, m = build(kind, None, causal), build(kind, impl, causal)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(1))
    pad = padding()
    if impl == "flex":  # no CPU backward in torch 2.13
        with torch.no_grad():
            diff = (run(m, x, causal) - run(ref, x, causal))[pad].abs().max()
        assert diff < 1e-5, diff
        return
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = run(m, xa, causal), run(ref, xb, causal)
    assert (ya - yb)[pad].abs().max() < 1e-5
    w = torch.randn_like(ya) * pad[..., None]
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    assert (xa.grad - xb.grad).abs().max() < 1e-4
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        assert (p.grad - q.grad).abs().max() < 1e-4, name


@pytest.mark.parametrize("kind", ["local", "sparse", "longformer"])
def test_runtime_global_positions_every_implementation(kind):
    g = torch.zeros(B, T, dtype=torch.long)
    g[0, 7] = g[1, 30] = 1
    state = StackState(inputs={"global_attention_mask": g})
    ref = build(kind, None, False)
    x = torch.randn(B, T, D)
    with torch.no_grad():
        want = run(ref, x, False, state)
        assert (want - run(ref, x, False)).abs().max() > 1e-3  # the globals matter
        for impl in IMPLS:
            m = build(kind, impl, False)
            m.load_state_dict(ref.state_dict())
            assert (run(m, x, False, state) - want)[padding()].abs().max() < 1e-5, impl


@pytest.mark.parametrize("impl", ["blocked", "sdpa"])
def test_bf16_close_to_float32(impl):
    ref = build("sparse", None, False)
    m = build("sparse", impl, False)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, D)
    with torch.no_grad():
        want = run(ref, x, False)
        got = run(m.to(torch.bfloat16), x.to(torch.bfloat16), False).float()
    assert got.dtype == torch.float32 and (got - want)[padding()].abs().max() < 0.05


def test_blocked_touches_only_needed_tiles():
    """A 5-token window over 37 tokens in 4-token tiles: 4 key tiles per query tile."""
    m = build("local", "blocked", False)
    assert m.parts[0].max_tiles(4, 10) == 4


@pytest.mark.parametrize("impl", ["blocked", "sdpa"])
def test_no_graph_breaks(impl):
    m = build("sparse", impl, True)
    x = torch.randn(B, T, D)
    mask = AttentionMask(causal=True, key_padding=padding())
    compiled = torch.compile(lambda x, kp: m(x, mask=AttentionMask(causal=True, key_padding=kp)),
                             backend="aot_eager", fullgraph=True)
    try:
        with torch.no_grad():
            got = compiled(x, padding())
            want = m(x, mask=mask)
    finally:
        torch._dynamo.reset()
    assert (got - want)[padding()].abs().max() < 1e-5


@pytest.mark.slow
def test_inductor_forward_and_backward_blocked():
    """One real inductor compile of the family: blocked, forward and backward."""
    ref, m = build("sparse", None, True), build("sparse", "blocked", True)
    m.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, D)
    compiled = torch.compile(lambda x, kp: m(x, mask=AttentionMask(causal=True, key_padding=kp)),
                             backend="inductor", fullgraph=True)
    try:
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = compiled(xa, padding()), run(ref, xb, True)
        (ya * padding()[..., None]).sum().backward()
        (yb * padding()[..., None]).sum().backward()
    finally:
        torch._dynamo.reset()
    assert (ya - yb)[padding()].abs().max() < 1e-4
    assert (xa.grad - xb.grad).abs().max() < 1e-4
