"""Transformer-XL against its defining equations (Dai et al. 2019, section 3.3), written
naively: for segments of a sequence fed one after another with the returned ``mems``,
each layer n computes, over h~ = [SG(m^{n-1}); h^{n-1}],

    A(i, j) = q_i.k_j + q_i.W_r R_{i-j} + u.k_j + v.W_r R_{i-j}    (i at M + i, j over h~)
    a = softmax(A / sqrt(d_head), causal) v;  o = LN(h + W_o a);  h^n = LN(o + FF(o))

with R the sinusoidal embedding [sin(d f), cos(d f)], and m^n = the last mem_len
positions of h~. Hugging Face removed its Transformer-XL, so the reference is this file.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from parity_helpers import assert_close, check_spec_parses, spec_ir
from txdsl.back.construct import construct

VOCAB, D, HEADS, HD, LAYERS, D_FF, MEM = 37, 36, 3, 10, 2, 50, 8
SEGMENTS = (6, 5, 7)  # lengths; the memory fills (6), overflows (11 -> 8), stays full

TINY = f"""import "transformer_xl.tx"
model tiny extends transformer_xl {{
  vocab = {VOCAB}; d_model = {D}; heads = {HEADS}; layers = {LAYERS}; d_ff = {D_FF}; drop = 0.0
  decoder {{
    attention.head_dim = {HD}
    attention.mem_len = {MEM}
  }}
}}
"""


@pytest.fixture(scope="module")
def model(registry):
    m = construct(spec_ir("transformer_xl.tx", TINY), registry=registry)
    torch.manual_seed(1)
    with torch.no_grad():  # large random weights (u, v and the head bias start at zero)
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
    return m.eval()


def sinusoid(distance: int) -> torch.Tensor:
    f = [10000 ** (-2 * k / D) for k in range(D // 2)]
    return torch.tensor([math.sin(distance * x) for x in f] + [math.cos(distance * x) for x in f])


def layer_norm(x, norm):
    return F.layer_norm(x, (D,), norm.weight, norm.bias, norm.eps)


@torch.no_grad()
def reference_layer(layer, h, mem):
    """One layer on one row: h (T, D), mem (M, D) -> output (T, D), the new memory."""
    att = layer.attention
    ht = torch.cat([mem, h]) if mem is not None else h  # (M+T, D)
    M, T = ht.shape[0] - h.shape[0], h.shape[0]
    q = (h @ att.q_proj.weight.T).view(T, HEADS, HD)
    k = (ht @ att.k_proj.weight.T).view(M + T, HEADS, HD)
    v = (ht @ att.v_proj.weight.T).view(M + T, HEADS, HD)
    u, vb = att.r_w_bias, att.r_r_bias
    out = torch.zeros(T, HEADS, HD)
    for n in range(HEADS):
        for i in range(T):
            scores = []
            for j in range(M + i + 1):  # causal over memory and segment
                r = (sinusoid(M + i - j) @ att.r_net.weight.T).view(HEADS, HD)[n]
                a = q[i, n] @ k[j, n] + q[i, n] @ r + u[n] @ k[j, n] + vb[n] @ r
                scores.append(a / math.sqrt(HD))
            w = torch.softmax(torch.stack(scores), 0)
            out[i, n] = sum(w[j] * v[j, n] for j in range(len(scores)))
    o = layer_norm(h + out.reshape(T, -1) @ att.out_proj.weight.T, layer.attention_norm)
    ff = layer.ffn
    hidden = F.relu(o @ ff.up.weight.T + ff.up.bias) @ ff.down.weight.T + ff.down.bias
    return layer_norm(o + hidden, layer.ffn_norm), ht[-MEM:]


@torch.no_grad()
def reference(model, segments):
    """Logits and memories of every segment for row 0, segment by segment."""
    emb, head = model.embedding.tokens.weight, model.heads.lm
    mems, out = [None] * LAYERS, []
    for ids in segments:
        h = emb[ids] * math.sqrt(D)
        new = []
        for n, layer in enumerate(model.decoder.layers):
            new.append(torch.cat([mems[n], h])[-MEM:] if mems[n] is not None else h[-MEM:])
            h, _ = reference_layer(layer, h, mems[n])
        mems = new
        out.append((h @ head.weight.T + head.bias, [m.clone() for m in mems]))
    return out


def tokens(B: int = 2):
    g = torch.Generator().manual_seed(4)
    return torch.randint(0, VOCAB, (B, sum(SEGMENTS)), generator=g)


def split(x):
    bounds = torch.tensor((0,) + SEGMENTS).cumsum(0).tolist()
    return [x[:, a:b] for a, b in zip(bounds, bounds[1:])]


@torch.no_grad()
def test_three_segments_equal_the_equations(model):
    x = tokens()
    want = reference(model, [s[0] for s in split(x)])
    mems = None
    for (logits_want, mems_want), seg in zip(want, split(x)):
        out = model(seg, mems=mems)
        mems = out.mems
        assert len(mems) == LAYERS
        assert_close(out.logits[0], logits_want, atol=1e-4)
        for got, exp in zip(mems, mems_want):
            assert got.shape == (2, min(MEM, got.shape[1]), D)
            assert_close(got[0], exp, atol=1e-4)
    assert mems[0].shape[1] == MEM


def test_memory_stops_the_gradient(model):
    x = tokens()
    first = model(split(x)[0])
    assert all(not m.requires_grad for m in first.mems)
    model.zero_grad()
    model(split(x)[1], mems=first.mems).logits.sum().backward()
    assert model.decoder.layers[0].attention.r_w_bias.grad is not None


@torch.no_grad()
def test_a_long_memory_equals_the_whole_sequence(model):
    """With mem_len covering everything before it, segment by segment == all at once
    (the recurrence is exact, not an approximation, when nothing falls off)."""
    x = tokens()
    whole = model(x).logits
    for layer in model.decoder.layers:
        layer.attention.mem_len = 64
    try:
        mems, parts = None, []
        for seg in split(x):
            out = model(seg, mems=mems)
            mems, parts = out.mems, parts + [out.logits]
    finally:
        for layer in model.decoder.layers:
            layer.attention.mem_len = MEM
    assert_close(torch.cat(parts, dim=1), whole, atol=1e-4)


@torch.no_grad()
def test_generate_carries_the_memory(model):
    x = tokens()[:, :5]
    for layer in model.decoder.layers:
        layer.attention.mem_len = 64
    try:
        got = model.generate(x, 6)
        ids = x
        for _ in range(6):  # greedy without memory: the whole sequence each step
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    finally:
        for layer in model.decoder.layers:
            layer.attention.mem_len = MEM
    assert torch.equal(got, ids)


@torch.no_grad()
def test_one_token_segments_equal_the_whole_sequence(model):
    """What generate does: the prompt, then one-token segments reading the mems."""
    x = tokens()[:, :9]
    whole = model(x).logits
    for layer in model.decoder.layers:
        layer.attention.mem_len = 64
    try:
        out = model(x[:, :4])
        parts, mems = [out.logits], out.mems
        for t in range(4, 9):
            out = model(x[:, t:t + 1], mems=mems)
            parts, mems = parts + [out.logits], out.mems
    finally:
        for layer in model.decoder.layers:
            layer.attention.mem_len = MEM
    assert_close(torch.cat(parts, dim=1), whole, atol=1e-4)


def test_tiny_spec_parses():
    check_spec_parses("transformer_xl.tx", TINY)


def test_bad_mems_are_refused(model):
    x = tokens()
    with pytest.raises(ValueError, match=r"mems\[0\] must be \(batch 2, memory, d_model 36\)"):
        model(x, mems=(torch.zeros(3, 4, D), torch.zeros(3, 4, D)))
    with pytest.raises(TypeError, match="mems must be"):
        model(x, mems=torch.zeros(2, 4, D))
