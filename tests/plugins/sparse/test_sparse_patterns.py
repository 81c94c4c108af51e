"""Each sparse kind's mask == its paper's definition, written out densely (loops) here.

Causal and bidirectional, lengths that are not a multiple of the block, length 1,
key padding; the mask is the one the module really uses (``SparseAttention.pattern``
on the stack's mask). Degenerate case: ``local`` with window >= length == ``full``.
"""

from __future__ import annotations

import pytest
import torch

from txdsl.sdk import BuildContext, Dims
from txdsl.sdk.attention import StackState
from txdsl.sdk.mask import AttentionMask
from txdsl_attention.sparse import KINDS, SparseAttention
from txdsl_attention.sparse.unions import LongformerArgs

H = 4
DIMS = Dims(d_model=32, width=32, embed_size=32, context=64)


def module(kind: str, **args) -> SparseAttention:
    cls = KINDS[kind] if kind in KINDS else LongformerArgs
    a = cls(heads=H, **args)
    a.check(DIMS)
    return SparseAttention.from_args(a, BuildContext(dims=DIMS))


def mask_of(m: SparseAttention, T: int, causal: bool, padding=None, state=None) -> torch.Tensor:
    """``(B, H, T, T)`` bool: what the module lets query i see."""
    base = AttentionMask(causal=causal, key_padding=padding)
    sparse, _ = m.sparse_mask(base, T, state)
    return sparse.dense(T, T, heads=H).expand(padding.shape[0] if padding is not None else 1,
                                              H, T, T)


def definition(rule, T: int, causal: bool, padding=None) -> torch.Tensor:
    """The naive mask: ``rule(h, i, j)`` for every pair, causality and padding by loops."""
    B = padding.shape[0] if padding is not None else 1
    out = torch.zeros(B, H, T, T, dtype=torch.bool)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                for j in range(T):
                    ok = rule(h, i, j) and (not causal or j <= i)
                    ok = ok and (padding is None or bool(padding[b, j]))
                    out[b, h, i, j] = ok
    return out


RULES = {  # kind, args, the paper's definition of which key j query i sees (head h)
    "local": ({"window": 3}, lambda h, i, j, T: abs(i - j) < 3),
    "dilated": ({"window": 3, "dilation": 2},
                lambda h, i, j, T: abs(i - j) < 6 and (i - j) % 2 == 0),
    "strided": ({"stride": 3},  # Child et al.: half the heads local, half every stride-th
                lambda h, i, j, T: abs(i - j) < 3 if h < H // 2 else (i - j) % 3 == 0),
    "fixed": ({"stride": 4, "summary": 2},  # own block; the last 2 of every block
              lambda h, i, j, T: i // 4 == j // 4 if h < H // 2 else j % 4 >= 2),
    "block": ({"block": 4}, lambda h, i, j, T: i // 4 == j // 4),
    "global": ({"global_tokens": 2, "positions": "5"},
               lambda h, i, j, T: i < 2 or j < 2 or i == 5 or j == 5),
    "sparse": ({"window": 2, "block": 5, "reach": 1, "global_tokens": 1},
               lambda h, i, j, T: abs(i - j) < 2 or abs(i // 5 - j // 5) <= 1 or i < 1 or j < 1),
    "longformer": ({"window": 3}, lambda h, i, j, T: abs(i - j) < 3),
}


@pytest.mark.parametrize("T", [1, 6, 13])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("kind", sorted(RULES))
def test_mask_is_the_definition(kind, causal, T):
    args, rule = RULES[kind]
    got = mask_of(module(kind, **args), T, causal)
    want = definition(lambda h, i, j: rule(h, i, j, T), T, causal)
    assert torch.equal(got, want), (got.int() - want.int()).nonzero()[:5]


def test_mask_with_padding_and_not_a_multiple_of_the_block():
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[0, 8:] = False
    pad[1, :3] = False
    got = mask_of(module("block", block=4, reach=1), 11, False, pad)
    want = definition(lambda h, i, j: abs(i // 4 - j // 4) <= 1, 11, False, pad)
    assert torch.equal(got, want)


def test_bigbird_layout_global_first_and_last_blocks():
    """BigBird (Zaheer et al. 2020) block_sparse with no random blocks: sliding 3 blocks,
    the first and the last block global."""
    b, T = 4, 24
    m = module("sparse", block=b, reach=1, global_tokens=b, global_last=b)
    want = definition(lambda h, i, j: abs(i // b - j // b) <= 1 or i < b or j < b
                      or i >= T - b or j >= T - b, T, False)
    assert torch.equal(mask_of(m, T, False), want)


def test_ring_wraps_around():
    """Star-Transformer's ring (Guo et al. 2019): neighbours on a circle, plus the relay."""
    T = 9
    m = module("sparse", window=2, ring=True, global_tokens=1)
    want = definition(lambda h, i, j: min(abs(i - j), T - abs(i - j)) < 2 or i < 1 or j < 1,
                      T, False)
    assert torch.equal(mask_of(m, T, False), want)


def test_random_blocks_seeded_and_drawn_per_query_block():
    m1, m2 = module("random", random=2, random_block=4), module("random", random=2, random_block=4)
    other = module("random", random=2, random_block=4, seed=1)
    a, b, c = (mask_of(m, 32, False)[0, 0] for m in (m1, m2, other))
    assert torch.equal(a, b) and not torch.equal(a, c)  # deterministic per seed
    table = a.view(8, 4, 8, 4)  # (q block, q in block, k block, k in block)
    assert (table == table[:, :1, :, :1]).all()  # whole blocks
    assert (table[:, 0, :, 0].sum(-1) == 2).all()  # exactly 2 key blocks per query block


def test_global_attention_mask_input():
    T = 8
    g = torch.zeros(2, T, dtype=torch.long)
    g[0, 3] = 1
    g[1, 0] = 1
    m = module("longformer", window=2)
    got = mask_of(m, T, False, torch.ones(2, T, dtype=torch.bool),
                  StackState(inputs={"global_attention_mask": g}))
    for b, p in ((0, 3), (1, 0)):
        want = definition(lambda h, i, j: abs(i - j) < 2 or i == p or j == p, T, False)[0]
        assert torch.equal(got[b], want)


@pytest.mark.parametrize("causal", [False, True])
def test_local_with_window_at_least_the_length_is_full(causal):
    T = 10
    got = mask_of(module("local", window=T), T, causal)
    want = AttentionMask(causal=causal).dense(T, T)
    assert torch.equal(got, (want if want is not None else torch.ones(1, 1, T, T, dtype=torch.bool))
                       .expand_as(got))
