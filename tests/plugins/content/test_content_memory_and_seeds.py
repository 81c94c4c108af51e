"""``topk`` and ``routing`` computed a few query rows at a time (recomputed in the
backward) equal one chunk, forward and gradients; ``lsh``
layers of one build draw their own rotations (``seed + i``) unless ``layer_seeds: false``."""

from __future__ import annotations

import pytest
import torch

from txdsl.sdk import AttentionMask, BuildContext, Dims
from txdsl_attention.content import (LSHArgs, LSHAttention, RoutingArgs, RoutingAttention,
                                     TopKArgs, TopKAttention)
from txdsl_attention.content import common

D, H = 32, 2
DIMS = Dims(d_model=D, width=D, embed_size=D)


@pytest.mark.parametrize("cls, args", [(TopKAttention, TopKArgs(heads=H, k=3)),
                                       (RoutingAttention, RoutingArgs(heads=H, clusters=3))],
                         ids=["topk", "routing"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_query_chunks_change_nothing(monkeypatch, cls, args, causal):
    torch.manual_seed(0)
    m = cls.from_args(args, BuildContext(dims=DIMS)).eval()
    pad = torch.ones(2, 23, dtype=torch.bool)
    pad[1, 18:] = False
    x = torch.randn(2, 23, D, requires_grad=True)
    mask = AttentionMask(causal=causal, key_padding=pad)
    whole = m(x, mask=mask)
    (g_whole,) = torch.autograd.grad((whole * pad[..., None]).sum(), x)
    calls = []
    chunks = common.row_chunks
    monkeypatch.setattr(common, "SCORE_ELEMENTS", 2 * H * 23 * 5)  # 5 rows per chunk
    monkeypatch.setattr(common, "row_chunks", lambda T, n: calls.append(chunks(T, n)) or
                        chunks(T, n))
    parts = m(x, mask=mask)
    (g_parts,) = torch.autograd.grad((parts * pad[..., None]).sum(), x)
    assert len(calls[0]) == 5  # 23 rows in chunks of 5
    assert (parts - whole)[pad].abs().max() < 1e-5
    assert (g_parts - g_whole).abs().max() < 1e-4


def test_lsh_layers_of_one_build_draw_their_own_rotations():
    ctx = BuildContext(dims=DIMS)
    a, b = (LSHAttention.from_args(LSHArgs(heads=H, buckets=4, seed=5), ctx) for _ in range(2))
    assert not torch.equal(a.rotations, b.rotations)
    alone = LSHAttention.from_args(LSHArgs(heads=H, buckets=4, seed=6), BuildContext(dims=DIMS))
    assert torch.equal(b.rotations, alone.rotations)  # layer 1 of seed 5 draws from seed 6
    ctx = BuildContext(dims=DIMS)
    same = [LSHAttention.from_args(LSHArgs(heads=H, buckets=4, seed=5, layer_seeds=False), ctx)
            for _ in range(2)]
    assert torch.equal(same[0].rotations, same[1].rotations)
    assert torch.equal(same[0].rotations, a.rotations)
