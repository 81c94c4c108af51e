"""The ``blocked`` kernel computes only the tile plan's columns, never a dense (T, T) mask.

- the plan of a sliding window, a block pattern and a BigBird union has the
  column count the pattern needs (band tiles + random tiles + global columns);
- no dense or additive lowering of the mask is made (and none of the stack's);
- with one tile per group (``GROUP_BYTES`` tiny) the grouped forward and the
  recomputing backward (:class:`TiledAttention`) still equal the reference;
- dropout in training goes through the autograd path (no custom backward).
"""

from __future__ import annotations

import pytest
import torch

from txdsl.sdk import BuildContext, Dims
from txdsl.sdk.mask import AttentionMask
from txdsl_attention.sparse import KINDS, BlockedSparseAttention, SparseAttention
from txdsl_attention.sparse import blocked as blocked_module
from txdsl_attention.sparse import patterns as P
from txdsl_attention.sparse import tiling
from txdsl_attention.sparse.longformer import LongformerBlocked, LongformerReference
from txdsl_attention.sparse.unions import LongformerArgs

D, H = 32, 4
DIMS = Dims(d_model=D, width=D, embed_size=D, context=128)


def pair(kind: str, **args):
    cls_args = KINDS.get(kind, LongformerArgs)
    a = cls_args(heads=H, **args)
    ref_cls, blk_cls = (LongformerReference, LongformerBlocked) if kind == "longformer" else \
        (SparseAttention, BlockedSparseAttention)
    torch.manual_seed(0)
    ref = ref_cls.from_args(a, BuildContext(dims=DIMS))
    blk = blk_cls.from_args(a, BuildContext(dims=DIMS))
    blk.load_state_dict(ref.state_dict())
    return ref, blk


@pytest.mark.parametrize("causal, want", [(True, 2 * 16), (False, 3 * 16)])
def test_window_plan_is_its_band(causal, want):
    """window 16 in 16-slot tiles: own tile and the previous (and, bidirectional, the next)."""
    union = P.Union((P.Local(16),))
    plan = tiling.plan(union, 16, 128, causal, "cpu", None, False)
    assert plan.cols.shape == (8, want) and not plan.row_slots


def test_bigbird_plan_counts_band_random_and_globals():
    """block 8 reach 1 + 2 random blocks + first 8 global: 3 band tiles, 2 random tiles, the
    8 global columns (kept only where the band or a random tile doesn't hold them)."""
    rnd = P.Random(2, 8, 0, 16).bound(128, False)
    union = P.Union((P.Block(8, 1), P.Global(8), rnd))
    plan = tiling.plan(union, 8, 128, False, "cpu", None, False)
    assert plan.cols.shape == (16, 3 * 8 + 2 * 8 + 8)
    assert plan.row_slots == list(range(8))
    # every key appears at most once per query tile
    for i in range(16):
        slots = plan.cols[i][plan.valid[i]]
        assert slots.unique().numel() == slots.numel()


@pytest.mark.parametrize("kind, args", [
    ("local", {"window": 16}),
    ("block", {"block": 16, "reach": 1}),
    ("sparse", {"block": 16, "reach": 1, "global_tokens": 2, "random": 1}),
    ("longformer", {"window": 16, "global_tokens": 2}),
])
def test_no_dense_mask_is_formed(kind, args):
    ref, blk = pair(kind, **args)
    x = torch.randn(1, 128, D)
    mask = AttentionMask(causal=False)
    with torch.no_grad():
        got = blk(x, mask=mask)
        want = ref(x, mask=AttentionMask(causal=False))
    assert (got - want).abs().max() < 1e-5
    lowered = [k for child in mask._children.values() for k in child._lowered]
    lowered += list(mask._lowered)
    assert lowered and not any(k[0] in ("dense", "additive") for k in lowered), lowered


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_one_tile_per_group_forward_and_backward(monkeypatch, causal):
    monkeypatch.setattr(blocked_module, "GROUP_BYTES", 1)
    ref, blk = pair("sparse", window=5, global_tokens=2, random=1, random_block=4, chunk=4)
    pad = torch.ones(2, 37, dtype=torch.bool)
    pad[0, 30:] = False
    x = torch.randn(2, 37, D)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = blk(xa, mask=AttentionMask(causal=causal, key_padding=pad))
    yb = ref(xb, mask=AttentionMask(causal=causal, key_padding=pad))
    assert (ya - yb)[pad].abs().max() < 1e-5
    w = torch.randn_like(ya) * pad[..., None]
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    assert (xa.grad - xb.grad).abs().max() < 1e-4
    for (name, p), q in zip(blk.named_parameters(), ref.parameters()):
        assert (p.grad - q.grad).abs().max() < 1e-4, name


def test_dropout_in_training_takes_the_autograd_path():
    _, blk = pair("local", window=8, chunk=8, dropout=0.5)
    blk.train()
    x = torch.randn(1, 64, D, requires_grad=True)
    y = blk(x, mask=AttentionMask(causal=True))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    blk.eval()
    with torch.no_grad():
        a, b = blk(x, mask=AttentionMask(causal=True)), blk(x, mask=AttentionMask(causal=True))
    assert torch.equal(a, b)  # eval: no dropout
