"""``full`` attention: the reference against the formula, SDPA against the reference,
masks, GQA, positions, the KV cache, parameter counts; declared kinds' counts vs HF."""

from __future__ import annotations


import pytest
import torch
from pydantic import ValidationError

import txdsl_attention
import txdsl_positions
from txdsl.plugins import load_registry
from txdsl.sdk import ArgError, BuildContext, Dims
from txdsl.sdk import AttentionMask, CrossKV, PositionContext
from txdsl_attention import (DisentangledArgs, FullArgs, ReferenceAttention, RelativeXLArgs,
                             SDPAAttention, TwoStreamArgs)
from txdsl_positions import AlibiPositions, RotaryPositions

D, H = 32, 4


def dims(d: int = D, **kw) -> Dims:
    return Dims(d_model=d, width=d, embed_size=d, **kw)


def build(cls, seed: int = 0, d: int = D, **args):
    torch.manual_seed(seed)
    m = cls.from_args(FullArgs(**{"heads": H, **args}), BuildContext(dims=dims(d)))
    return m.eval()


def pair(**args):
    """A reference and an SDPA module with the same weights."""
    ref = build(ReferenceAttention, **args)
    sdpa = build(SDPAAttention, seed=1, **args)
    sdpa.load_state_dict(ref.state_dict())
    return ref, sdpa


def naive(m, x, memory=None, mask_add=None, bias=None, rotate=None):
    """softmax(Q K^T * scale + bias + mask) V per head, with the module's weights, head by head."""
    src = x if memory is None else memory
    hd, groups = m.head_dim, m.heads // m.kv_heads
    heads = []
    for h in range(m.heads):
        g = h // groups
        wq, wk, wv = (m.q_proj.weight[h * hd:(h + 1) * hd], m.k_proj.weight[g * hd:(g + 1) * hd],
                      m.v_proj.weight[g * hd:(g + 1) * hd])
        q, k, v = x @ wq.T, src @ wk.T, src @ wv.T
        if m.q_proj.bias is not None:
            q = q + m.q_proj.bias[h * hd:(h + 1) * hd]
            k = k + m.k_proj.bias[g * hd:(g + 1) * hd]
            v = v + m.v_proj.bias[g * hd:(g + 1) * hd]
        if rotate is not None:
            q, k = rotate(q, k)
        s = q @ k.transpose(-1, -2) * m.scale  # (B, T, S)
        if bias is not None:
            s = s + bias[:, h]
        if mask_add is not None:
            s = s + mask_add[:, 0]
        heads.append(torch.softmax(s, dim=-1) @ v)
    return m.out_proj(torch.cat(heads, dim=-1))


def close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


# ------------------------------------------------------------- the formula


@pytest.mark.parametrize("kv_heads", [None, 2, 1])
@pytest.mark.parametrize("causal", [False, True])
def test_reference_is_the_formula(kv_heads, causal):
    torch.manual_seed(3)
    m = build(ReferenceAttention, kv_heads=kv_heads)
    x = torch.randn(2, 7, D)
    pad = torch.ones(2, 7, dtype=torch.bool)
    pad[1, 5:] = False
    mask = AttentionMask(causal=causal, key_padding=pad)
    close(m(x, mask=mask), naive(m, x, mask_add=mask.additive(7, 7, torch.float32)))


def test_custom_scale_and_no_bias():
    torch.manual_seed(4)
    m = build(ReferenceAttention, scale=1.0, bias=False)
    assert m.q_proj.bias is None and m.scale == 1.0
    x = torch.randn(2, 5, D)
    close(m(x, mask=AttentionMask()), naive(m, x))
    _, sdpa = pair(scale=1.0, bias=False)
    sdpa.load_state_dict(m.state_dict())
    close(sdpa(x, mask=AttentionMask()), m(x, mask=AttentionMask()))


# ------------------------------------------------------------ sdpa == reference


def _padding(B, S, fully_padded_row=False):
    pad = torch.ones(B, S, dtype=torch.bool)
    pad[0, S - 2:] = False
    if fully_padded_row:
        pad[1, :] = False  # every query of batch row 1 sees only padding
    return pad


CASES = {
    "self": dict(T=6, S=None, causal=False, pad=False),
    "self_causal": dict(T=6, S=None, causal=True, pad=False),
    "self_padded": dict(T=6, S=None, causal=False, pad=True),
    "self_causal_padded": dict(T=6, S=None, causal=True, pad=True),
    "self_fully_padded_row": dict(T=6, S=None, causal=True, pad="full"),
    "length_1": dict(T=1, S=None, causal=True, pad=False),
    "cross": dict(T=5, S=9, causal=False, pad=False),
    "cross_padded": dict(T=5, S=9, causal=False, pad=True),
    "cross_fully_padded_row": dict(T=3, S=4, causal=False, pad="full"),
}


@pytest.mark.parametrize("kv_heads", [None, 2, 1])
@pytest.mark.parametrize("case", list(CASES))
def test_sdpa_equals_reference(case, kv_heads):
    c = CASES[case]
    ref, sdpa = pair(kv_heads=kv_heads)
    torch.manual_seed(5)
    B, T = 2, c["T"]
    x = torch.randn(B, T, D)
    memory = torch.randn(B, c["S"], D) if c["S"] else None
    S = c["S"] or T
    pad = _padding(B, S, c["pad"] == "full") if c["pad"] else None
    mask = AttentionMask(causal=c["causal"], key_padding=pad)
    out = ref(x, memory, mask=mask)
    assert out.shape == (B, T, D) and torch.isfinite(out).all()
    close(sdpa(x, memory, mask=mask), out)
    close(out, naive(ref, x, memory, mask_add=mask.additive(T, S, torch.float32)))


def test_fully_masked_row_is_finite_and_uniform():
    ref, sdpa = pair()
    x = torch.randn(1, 4, D)
    mask = AttentionMask(key_padding=torch.zeros(1, 4, dtype=torch.bool))
    v = ref.v_proj(x).mean(dim=1, keepdim=True)  # uniform weights: the mean value
    expected = ref.out_proj(v).expand(1, 4, D)
    close(ref(x, mask=mask), expected)
    close(sdpa(x, mask=mask), expected)


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_gqa_equals_repeated_kv_heads(kv_heads):
    gqa_ref, gqa_sdpa = pair(kv_heads=kv_heads)
    mha = build(ReferenceAttention)
    groups, hd = H // kv_heads, D // H
    state = dict(gqa_ref.state_dict())
    for name in ("k_proj", "v_proj"):  # kv head g becomes query heads g*groups .. g*groups+groups-1
        w = state[f"{name}.weight"].view(kv_heads, hd, D)
        state[f"{name}.weight"] = w.repeat_interleave(groups, dim=0).reshape(H * hd, D)
        b = state[f"{name}.bias"].view(kv_heads, hd)
        state[f"{name}.bias"] = b.repeat_interleave(groups, dim=0).reshape(H * hd)
    mha.load_state_dict(state)
    x = torch.randn(2, 6, D)
    mask = AttentionMask(causal=True, key_padding=_padding(2, 6))
    close(gqa_ref(x, mask=mask), mha(x, mask=mask))
    close(gqa_sdpa(x, mask=mask), mha(x, mask=mask))


@pytest.mark.parametrize("causal", [False, True])
def test_position_bias_is_added(causal):
    ref, sdpa = pair()
    torch.manual_seed(6)
    x = torch.randn(2, 5, D)
    bias = torch.randn(1, H, 5, 5)
    pos = PositionContext(torch.arange(5)[None], torch.arange(5)[None], bias=bias)
    mask = AttentionMask(causal=causal, key_padding=_padding(2, 5))
    out = ref(x, mask=mask, position=pos)
    close(out, naive(ref, x, mask_add=mask.additive(5, 5, torch.float32), bias=bias))
    close(sdpa(x, mask=mask, position=pos), out)
    assert not torch.allclose(out, ref(x, mask=mask), atol=1e-3)


def test_rope_rotation_is_applied():
    ref, sdpa = pair(kv_heads=2)
    rope = RotaryPositions(rotary_dim=D // H)
    x = torch.randn(2, 6, D)
    positions = torch.arange(3, 9)
    pos = PositionContext.build(rope, positions[None], positions[None], torch.float32)
    mask = AttentionMask(causal=True)
    out = ref(x, mask=mask, position=pos)

    def rotate(q, k):  # (B, T, hd) per head
        q, k = rope.rotate(q[:, None], k[:, None], positions)
        return q[:, 0], k[:, 0]

    close(out, naive(ref, x, mask_add=mask.additive(6, 6, torch.float32), rotate=rotate))
    close(sdpa(x, mask=mask, position=pos), out)
    assert not torch.allclose(out, ref(x, mask=mask), atol=1e-3)


def test_cross_attention_is_not_rotated():
    ref, _ = pair()
    rope = RotaryPositions(rotary_dim=D // H)
    x, memory = torch.randn(1, 3, D), torch.randn(1, 5, D)
    pos = PositionContext.build(rope, torch.arange(3)[None], torch.arange(5)[None], torch.float32)
    close(ref(x, memory, mask=AttentionMask(), position=pos), ref(x, memory, mask=AttentionMask()))


def test_bf16_close_to_fp32():
    ref, sdpa = pair(kv_heads=2)
    x = torch.randn(2, 8, D)
    mask = AttentionMask(causal=True, key_padding=_padding(2, 8))
    expected = ref(x, mask=mask)
    for m in (ref, sdpa):
        m16 = m.to(torch.bfloat16)
        out = m16(x.to(torch.bfloat16), mask=mask)
        assert out.dtype == torch.bfloat16
        close(out.float(), expected, tol=3e-2)
        m.float()


@pytest.mark.parametrize("impl", [ReferenceAttention, SDPAAttention])
@pytest.mark.parametrize("position", [None, "rope", "alibi"])
def test_cached_decoding_equals_full_causal_pass(impl, position):
    m = build(impl, kv_heads=2)
    rope, alibi = RotaryPositions(rotary_dim=D // H), AlibiPositions(heads=H)
    torch.manual_seed(7)
    B, T = 2, 7
    x = torch.randn(B, T, D)

    def ctx(q_pos, k_pos):
        module = {"rope": rope, "alibi": alibi}.get(position)
        return PositionContext.build(module, q_pos[None], k_pos[None], torch.float32)

    full = m(x, mask=AttentionMask(causal=True), position=ctx(torch.arange(T), torch.arange(T)))
    cache, steps, t = m.new_state(B, T), [], 0  # preallocated: (B, H_kv, T, hd)
    for n in (3, 2, 1, 1):  # a prompt, a chunk of 2 (T < S, T > 1: needs the explicit mask), steps
        slots = torch.arange(t, t + n)
        steps.append(m(x[:, t:t + n], mask=AttentionMask(causal=True, q_slots=slots), cache=cache,
                       position=ctx(slots, torch.arange(T))))
        t += n
    assert cache.k.shape == (B, 2, T, D // H)
    close(torch.cat(steps, dim=1), full)


@pytest.mark.parametrize("impl", [ReferenceAttention, SDPAAttention])
def test_cross_attention_cache_is_reused(impl):
    m = build(impl)
    x, memory = torch.randn(2, 4, D), torch.randn(2, 6, D)
    mask = AttentionMask(key_padding=_padding(2, 6))
    expected = m(x, memory, mask=mask)
    cache = CrossKV()
    close(m(x[:, :2], memory, mask=mask, cache=cache), expected[:, :2])
    k = cache.k
    # The memory's keys/values are cached: a different memory is not looked at again.
    close(m(x[:, 2:], torch.zeros_like(memory), mask=mask, cache=cache), expected[:, 2:])
    assert cache.k is k and cache.k.shape[2] == 6


def test_dropout_only_in_training():
    ref, sdpa = pair(dropout=0.5)
    x = torch.randn(2, 5, D)
    expected = ref(x, mask=AttentionMask())
    for m in (ref, sdpa):
        close(m(x, mask=AttentionMask()), expected)  # eval: no dropout
        m.train()
        out = m(x, mask=AttentionMask())
        m.eval()
        assert not torch.allclose(out, expected)


# ---------------------------------------------------------- layout and counts


def test_parameter_layout_is_shared():
    ref, sdpa = pair(kv_heads=2)
    assert list(ref.state_dict()) == list(sdpa.state_dict()) == [
        f"{p}.{w}" for p in ("q_proj", "k_proj", "v_proj", "out_proj") for w in ("weight", "bias")]
    assert ref.k_proj.weight.shape == (2 * D // H, D)


@pytest.mark.parametrize("args,d", [
    (dict(heads=4), 32), (dict(heads=4, kv_heads=1, bias=False), 32),
    (dict(heads=8, kv_heads=2), 64), (dict(heads=4, head_dim=24), 32),
    (dict(heads=12), 768),
])
def test_param_count(args, d):
    m = ReferenceAttention.from_args(FullArgs(**args), BuildContext(dims=dims(d)))
    assert FullArgs(**args).param_count(dims(d)) == sum(p.numel() for p in m.parameters())


def test_check_errors():
    with pytest.raises(ArgError, match=r"^d_model \(770\) is not divisible by heads \(12\)$") as e:
        FullArgs(heads=12).check(dims(770))
    assert e.value.arg == "heads"
    with pytest.raises(ArgError, match=r"heads \(12\) is not divisible by kv_heads \(5\)"):
        FullArgs(heads=12, kv_heads=5).check(dims(768))
    FullArgs(heads=12, head_dim=64).check(dims(770))  # an explicit head_dim lifts the rule


# ------------------------------------------------------------- declared kinds


REGISTRY = load_registry({"attention": txdsl_attention, "positions": txdsl_positions})


def test_registered():
    assert [i.impl for i in REGISTRY.implementations("attention", "full")] == ["sdpa", "flex",
                                                                           "reference"]
    for name in ("relative_xl", "two_stream", "disentangled"):
        assert REGISTRY.has("attention", name)
        assert [i.impl for i in REGISTRY.implementations("attention", name)] in ([], ["reference"])
        assert REGISTRY.args("attention", name).accepts == {"scores"}
    assert REGISTRY.args("attention", "full").accepts == {"qk", "bias"}
    for name in REGISTRY.kinds("attention"):  # the cost model answers for every kind
        cls = REGISTRY.args("attention", name)
        args = cls(heads=4, **getattr(cls, "example", {}))  # required arguments: its example
        d = dims(64, context=128)
        assert args.param_count(d) > 0 and args.flops_per_token(d, 128) > 0


@pytest.mark.parametrize("d,heads", [(32, 4), (48, 3), (64, 8)])
def test_two_stream_param_count_matches_hf_xlnet(d, heads):
    from transformers import XLNetConfig
    from transformers.models.xlnet.modeling_xlnet import XLNetRelativeAttention

    hf = XLNetRelativeAttention(XLNetConfig(d_model=d, n_head=heads, d_inner=4 * d))
    hf_count = sum(p.numel() for p in hf.parameters()) - hf.layer_norm.weight.numel() * 2
    assert TwoStreamArgs(heads=heads).param_count(dims(d)) == hf_count  # its LayerNorm is the layer's


@pytest.mark.parametrize("share_att_key", [True, False])
@pytest.mark.parametrize("pos_att_type", [("p2c", "c2p"), ("c2p",), ()])
@pytest.mark.parametrize("d,heads", [(32, 4), (48, 6)])
def test_disentangled_param_count_matches_hf_deberta(d, heads, pos_att_type, share_att_key):
    from transformers import DebertaV2Config
    from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Attention

    cfg = DebertaV2Config(hidden_size=d, num_attention_heads=heads, intermediate_size=4 * d,
                          relative_attention=True, pos_att_type=list(pos_att_type),
                          share_att_key=share_att_key, position_buckets=16)
    hf = DebertaV2Attention(cfg)
    layer_norm = sum(p.numel() for p in hf.output.LayerNorm.parameters())  # the layer's norm
    expected = sum(p.numel() for p in hf.parameters()) - layer_norm
    args = DisentangledArgs(heads=heads, pos_att_type="|".join(pos_att_type),
                            share_att_key=share_att_key)
    assert args.param_count(dims(d)) == expected


def test_relative_xl_param_count_is_the_original_layout():
    d, h, hd = 64, 4, 16  # RelPartialLearnableMultiHeadAttn: qkv_net, o_net, r_net, r_w/r_r bias
    original = d * 3 * h * hd + h * hd * d + d * h * hd + 2 * h * hd
    assert RelativeXLArgs(heads=h).param_count(dims(d)) == original
    assert RelativeXLArgs(heads=h, untie_r=False).param_count(dims(d)) == original - 2 * h * hd
    with pytest.raises(ArgError, match="untie_r: false"):
        RelativeXLArgs(heads=h, untie_r=False).check(dims(d))


def test_declared_checks():
    with pytest.raises(ArgError, match="kv_heads"):
        RelativeXLArgs(heads=4, kv_heads=2).check(dims())
    with pytest.raises(ArgError, match="bias"):
        TwoStreamArgs(heads=4, bias=True).check(dims())
    with pytest.raises(ValidationError, match="names a term twice"):
        DisentangledArgs(heads=4, pos_att_type="c2p|c2p")
    with pytest.raises(ValidationError, match="unknown term 'p2p'"):
        DisentangledArgs(heads=4, pos_att_type="c2p|p2p")
    assert DisentangledArgs(heads=4).terms() == ("p2c", "c2p")
    assert DisentangledArgs(heads=4, pos_att_type=["c2p"]).pos_att_type == "c2p"
    assert DisentangledArgs(heads=4, pos_att_type=" c2p | p2c").pos_att_type == "c2p|p2c"
    assert DisentangledArgs(heads=4, pos_att_type="").terms() == ()
