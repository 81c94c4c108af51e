"""``shaw`` (Shaw et al. 2018) and ``cope`` (Golovneva et al. 2024) through the ``relative``
attention: against their equations written per query/key pair, the degenerate cases
(clipping 0 == no relative term), decoding == the full forward with left padding, an
``aot_eager`` fullgraph graph, validation of impossible pairings, and the specs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import txdsl
from txdsl.errors import SpecError
from txdsl.sdk.attention import AttentionMask
from txdsl.sdk.positions import PositionContext

SPECS = Path(__file__).resolve().parents[3] / "specs"
SPEC = """
model rel_tiny {{
  vocab = 40; d_model = 32; heads = 4
  embedding {{ tokens = vocab }}
  decoder(2) {{ norm = layernorm; position = {position}
               attention = relative(heads: heads, kv_heads: {kv}); ffn = mlp(hidden: 64) }}
  head = lm
}}
"""


def build(position: str, kv: int = 4, attention: str | None = None):
    text = SPEC.format(position=position, kv=kv)
    if attention is not None:
        text = text.replace(f"relative(heads: heads, kv_heads: {kv})", attention)
    model = txdsl.build(text, backend="eager", seed=0).module.eval()
    with torch.no_grad():  # scale the tables up so a wrong index shows
        for p in model.decoder.position.parameters() if model.decoder.position else ():
            p.mul_(3.0)
    return model


@pytest.fixture(scope="module")
def shaw():
    return build("shaw(max_distance: 2, per_layer: false)", kv=2)


@pytest.fixture(scope="module")
def cope():
    return build("cope(max_positions: 5, per_layer: false)")


def heads(attn, x):
    B, T, _ = x.shape
    H, hd, g = attn.heads, attn.head_dim, attn.heads // attn.kv_heads
    q = attn.q_proj(x).view(B, T, H, hd).transpose(1, 2)
    k = attn.k_proj(x).view(B, T, -1, hd).transpose(1, 2).repeat_interleave(g, 1)
    v = attn.v_proj(x).view(B, T, -1, hd).transpose(1, 2).repeat_interleave(g, 1)
    return q, k, v


def allowed_of(B, T, causal, padding):
    ok = torch.ones(B, T, T, dtype=torch.bool)
    if causal:
        ok &= torch.ones(T, T, dtype=torch.bool).tril()
    return ok & padding.bool()[:, None, :]


def naive_shaw(attn, pos, x, causal, padding):
    """Eq. 3-5 of the paper, one (b, h, i, j) at a time."""
    q, k, v = heads(attn, x)
    B, H, T, hd = q.shape
    kmax, wk, wv = pos.max_distance, pos.keys, pos.values
    ok = allowed_of(B, T, causal, padding)
    out = torch.zeros(B, H, T, hd)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                rel = [max(-kmax, min(kmax, j - i)) + kmax for j in range(T)]
                e = torch.stack([q[b, h, i] @ (k[b, h, j] + wk[rel[j]]) / math.sqrt(hd)
                                 for j in range(T)])
                e = e.masked_fill(~ok[b, i], torch.finfo(e.dtype).min)
                a = e.softmax(-1)
                out[b, h, i] = sum(a[j] * (v[b, h, j] + wv[rel[j]]) for j in range(T))
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, -1))


def naive_cope(attn, pos, x, causal, padding):
    """The paper's CoPE: gates, reverse cumulative sums, interpolated embeddings."""
    q, k, v = heads(attn, x)
    B, H, T, hd = q.shape
    emb, npos = pos.embeddings, pos.embeddings.shape[0]
    ok = allowed_of(B, T, causal, padding)
    out = torch.zeros(B, H, T, hd)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                a = torch.stack([q[b, h, i] @ k[b, h, j] / math.sqrt(hd) for j in range(T)])
                gate = torch.sigmoid(a) * ok[b, i]
                logits = []
                for j in range(T):
                    p = min(float(gate[j:].sum()), npos - 1)
                    lo, hi = math.floor(p), math.ceil(p)
                    e = (p - lo) * emb[hi] + (1 - (p - lo)) * emb[lo]
                    logits.append(a[j] + q[b, h, i] @ e)
                z = torch.stack(logits).masked_fill(~ok[b, i], torch.finfo(a.dtype).min)
                out[b, h, i] = z.softmax(-1) @ v[b, h]
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, -1))


@pytest.mark.parametrize("kind", ["shaw", "cope"])
@pytest.mark.parametrize("causal", [True, False])
def test_the_equation_with_masks(kind, causal, shaw, cope):
    model = {"shaw": shaw, "cope": cope}[kind]
    naive = {"shaw": naive_shaw, "cope": naive_cope}[kind]
    attn, pos = model.decoder.layers[0].attention, model.decoder.position
    x = torch.randn(2, 7, 32) * 2
    padding = torch.tensor([[1] * 7, [0, 0] + [1] * 5])
    positions = torch.arange(7)[None]
    mask = AttentionMask(causal=causal, key_padding=padding.bool())
    ctx = PositionContext.build(pos, positions, positions, x.dtype)
    with torch.no_grad():
        got, want = attn(x, mask=mask, position=ctx), naive(attn, pos, x, causal, padding)
        plain = attn(x, mask=mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got - plain).abs().max() > 1e-2  # the position term is really there


def test_shaw_clipping_zero_is_no_relative_term():
    keys_only = build("shaw(max_distance: 0, values: false, per_layer: false)")
    full = build("none", attention="full(heads: heads, kv_heads: 4)")
    missing = full.load_state_dict(keys_only.state_dict(), strict=False)
    assert missing.unexpected_keys == ["decoder.position.keys"] and not missing.missing_keys
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(keys_only(input_ids=ids).logits, full(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)
    # with the value table, clipping 0 adds the one vector w^V_0 to every head's output
    both = build("shaw(max_distance: 0, values: true, per_layer: false)")
    attn, pos = both.decoder.layers[0].attention, both.decoder.position
    x, mask = torch.randn(2, 5, 32), AttentionMask(causal=True)
    ctx = PositionContext.build(pos, torch.arange(5)[None], torch.arange(5)[None], x.dtype)
    with torch.no_grad():
        shift = attn.out_proj(pos.values[0].repeat(4)) - attn.out_proj.bias
        torch.testing.assert_close(attn(x, mask=mask, position=ctx),
                                   attn(x, mask=mask) + shift, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def per_layer():
    return {"shaw": build("shaw(max_distance: 2)", kv=2), "cope": build("cope(max_positions: 5)")}


@pytest.mark.parametrize("kind", ["shaw", "cope", "shaw per layer", "cope per layer"])
def test_decoding_equals_the_full_forward_and_compiles(kind, shaw, cope, per_layer):
    model = {"shaw": shaw, "cope": cope}.get(kind) or per_layer[kind.split()[0]]
    ids = torch.randint(0, 40, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        cache = model.new_cache(batch=2, capacity=8)
        decoded = torch.cat([model(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                                   past_key_values=cache, use_cache=True).logits
                             for t in range(8)], 1)
    torch.testing.assert_close(decoded[0], full[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decoded[1, 3:], full[1, 3:], atol=1e-5, rtol=1e-5)
    compiled = torch.compile(model.train(), backend="aot_eager", fullgraph=True)
    compiled(input_ids=ids).logits.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.decoder.position.parameters())
    model.zero_grad(set_to_none=True)
    model.eval()


@pytest.mark.parametrize("position,attention,expect", [
    ("shaw()", "full(heads: heads)", "'full' accepts positions that act on: bias, qk"),
    ("cope()", "relative_xl(heads: heads)", "'cope' pairs with attention: relative"),
    ("relative_xl()", "relative(heads: heads)", "'relative' takes the positions: cope, shaw"),
])
def test_impossible_pairings_are_located_errors(position, attention, expect):
    text = SPEC.format(position=position, kv=4).replace(
        "relative(heads: heads, kv_heads: 4)", attention)
    with pytest.raises(SpecError) as err:
        txdsl.parse(text)
    assert expect in str(err.value) and ":5:" in str(err.value)


def test_param_counts_are_exact(shaw, cope):
    for model, spec in ((shaw, "shaw(max_distance: 2, per_layer: false)"),
                        (cope, "cope(max_positions: 5, per_layer: false)")):
        n = sum(p.numel() for p in model.decoder.position.parameters())
        ir = txdsl.parse(SPEC.format(position=spec, kv=4))
        from txdsl.plugins import get_registry
        from txdsl.front.validate import dims_for
        reg = get_registry()
        d = dims_for(ir, reg, stack=ir.decoder)
        assert reg.args("position", ir.decoder.position.kind)(
            **ir.decoder.position.args).param_count(d) == n
    assert n == 5 * 8


@pytest.mark.parametrize("name", ["shaw", "cope"])
def test_the_specs_build(name):
    ir = txdsl.parse_file(SPECS / f"{name}.tx")
    assert ir.decoder.position.kind == name and ir.decoder.layers[0].attention.kind == "relative"


@pytest.mark.parametrize("kind", ["shaw", "cope"])
def test_per_layer_tables_each_layer_reads_its_own(kind, per_layer):
    """The default (as both papers' code): layer i == that layer with a one-table scheme
    holding table i; the tables differ, and the count is exact."""
    model = per_layer[kind]
    pos = model.decoder.position
    tables = dict(pos.named_parameters())
    assert all(t.shape[0] == 2 for t in tables.values())  # (layers, rows, head_dim)
    spec = "shaw(max_distance: 2, per_layer: false)" if kind == "shaw" else \
        "cope(max_positions: 5, per_layer: false)"
    one = build(spec, kv=2 if kind == "shaw" else 4).decoder.position
    ids = torch.randint(0, 40, (2, 7))
    positions = torch.arange(7)[None]
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        for i, layer in enumerate(model.decoder.layers):
            for name, t in tables.items():
                getattr(one, name).copy_(t[i])
            ctx = PositionContext.build(one, positions, positions, torch.float32)
            want = layer(out.hidden_states[i], mask=AttentionMask(causal=True), position=ctx)
            torch.testing.assert_close(out.hidden_states[i + 1], want, atol=1e-5, rtol=1e-5)
    from txdsl.front.estimate import estimate
    from txdsl.plugins import get_registry
    ir = txdsl.parse(SPEC.format(position=spec.replace(", per_layer: false", ""),
                                 kv=2 if kind == "shaw" else 4))
    assert estimate(ir, get_registry()).params == sum(p.numel() for p in model.parameters())
