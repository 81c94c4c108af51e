"""Position schemes against their papers' formulas and Hugging Face's implementations."""

from __future__ import annotations

import math

import pytest
import torch

import txdsl_attention
import txdsl_positions
from txdsl.plugins import load_registry
from txdsl.sdk import ArgError, BuildContext, Dims
from txdsl_positions import (AlibiArgs, AlibiPositions, CopeArgs, DisentangledPositionArgs,
                             LearnedArgs, LearnedPositions, RelativeXLPositionArgs, RopeArgs,
                             RotaryPositions, ShawArgs, SinusoidalArgs, SinusoidalPositions,
                             T5BiasArgs, T5RelativeBias, alibi_slopes, relative_position_bucket)

REGISTRY = load_registry({"attention": txdsl_attention, "positions": txdsl_positions})


def dims(d: int = 32, **kw) -> Dims:
    return Dims(d_model=d, width=d, embed_size=d, **kw)


def ctx(**kw) -> BuildContext:
    return BuildContext(dims=dims(**kw))


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------- sinusoidal


@pytest.mark.parametrize("max_len", [None, 64])
def test_sinusoidal_is_the_paper_formula(max_len):
    d = 16
    m = SinusoidalPositions.from_args(SinusoidalArgs(max_len=max_len), ctx(d=d))
    ids = torch.tensor([[0, 1, 2, 3], [5, 17, 40, 63]])
    out = m(ids)
    assert out.shape == (2, 4, d)
    for b in range(2):
        for t in range(4):
            pos = ids[b, t].item()
            for i in range(d // 2):
                angle = pos / 10000 ** (2 * i / d)
                assert out[b, t, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
                assert out[b, t, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert n_params(m) == 0 and len(m.state_dict()) == 0
    assert SinusoidalArgs().param_count(dims(d)) == 0
    assert m.position_ids(None, 3, past=2).tolist() == [[2, 3, 4]]


def test_sinusoidal_needs_even_width():
    with pytest.raises(ArgError, match="even width, got 33"):
        SinusoidalArgs().check(dims(33))
    with pytest.raises(ArgError, match=r"max_len \(16\) is shorter than the context \(32\)"):
        SinusoidalArgs(max_len=16).check(dims(context=32))
    SinusoidalArgs().check(dims(context=100000))


# -------------------------------------------------------------------- learned


def test_learned_shape_and_params():
    m = LearnedPositions.from_args(LearnedArgs(max_len=20), ctx(d=8))
    assert m(torch.arange(5)[None]).shape == (1, 5, 8)
    assert list(m.state_dict()) == ["embed.weight"]
    assert n_params(m) == LearnedArgs(max_len=20).param_count(dims(8)) == 160
    assert m.offset == 0
    assert m.position_ids(None, 4, past=3).tolist() == [[3, 4, 5, 6]]
    torch.testing.assert_close(m(torch.tensor([[2]]))[0, 0], m.embed.weight[2])


@pytest.mark.parametrize("past", [0, 4])
def test_learned_roberta_offset_matches_hf(past):
    from transformers.models.roberta.modeling_roberta import RobertaEmbeddings

    pad = 1
    m = LearnedPositions.from_args(LearnedArgs(max_len=64, padding_idx=pad), ctx(d=8))
    assert m.offset == 2
    input_ids = torch.tensor([[0, 5, 6, 7, 2, 1, 1], [0, 8, 2, 1, 1, 1, 1], [0, 4, 5, 6, 7, 8, 2]])
    expected = RobertaEmbeddings.create_position_ids_from_input_ids(input_ids, pad, past)
    mask = (input_ids != pad).long()
    assert m.position_ids(mask, 7, past=past).tolist() == expected.tolist()
    full_mask = torch.cat([torch.ones(3, past, dtype=torch.long), mask], dim=1)  # (B, past+T)
    assert m.position_ids(full_mask, 7, past=past).tolist() == expected.tolist()
    no_padding = RobertaEmbeddings.create_position_ids_from_input_ids(input_ids[2:], pad, past)
    assert m.position_ids(None, 7, past=past).tolist() == no_padding.tolist()
    assert m.embed.padding_idx == pad and torch.all(m.embed.weight[pad] == 0)


def test_learned_checks():
    with pytest.raises(ArgError, match=r"max_len \(512\) is shorter than the context \(512 \+ offset 2\)"):
        LearnedArgs(max_len=512, padding_idx=1).check(dims(context=512))
    LearnedArgs(max_len=514, padding_idx=1).check(dims(context=512))  # RoBERTa
    with pytest.raises(ArgError, match=r"padding_idx \(9\) must be below max_len \(9\)"):
        LearnedArgs(max_len=9, padding_idx=9).check(dims())


# ----------------------------------------------------------------------- rope


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_rope_matches_hf_llama(theta):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    d, heads, T = 64, 4, 9
    cfg = LlamaConfig(hidden_size=d, num_attention_heads=heads, num_key_value_heads=heads,
                      intermediate_size=128, vocab_size=10, max_position_embeddings=64,
                      rope_theta=theta)
    if getattr(cfg, "rope_parameters", None) is not None:
        cfg.rope_parameters["rope_theta"] = theta
    hf = LlamaRotaryEmbedding(cfg)
    m = RotaryPositions.from_args(RopeArgs(theta=theta), ctx(d=d, heads=heads))
    torch.manual_seed(0)
    q, k = torch.randn(2, heads, T, d // heads), torch.randn(2, heads, T, d // heads)
    positions = torch.arange(5, 5 + T)
    cos, sin = hf(q, positions[None])
    hq, hk = apply_rotary_pos_emb(q, k, cos, sin)
    mq, mk = m.rotate(q, k, positions)
    torch.testing.assert_close(mq, hq, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mk, hk, atol=1e-5, rtol=1e-5)
    assert n_params(m) == 0 and len(m.state_dict()) == 0


def test_rope_scores_depend_only_on_relative_position():
    m = RotaryPositions.from_args(RopeArgs(), ctx(d=32, heads=2))
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(mpos, npos):
        qm, _ = m.rotate(q, q, torch.tensor([mpos]))
        _, kn = m.rotate(k, k, torch.tensor([npos]))
        return (qm * kn).sum().item()

    for shift in (0, 3, 100):
        assert score(7 + shift, 2 + shift) == pytest.approx(score(7, 2), abs=1e-4)
    assert score(7, 2) != pytest.approx(score(7, 3), abs=1e-4)


def test_rope_fraction_rotates_leading_dims_only():
    m = RotaryPositions.from_args(RopeArgs(fraction=0.25), ctx(d=64, heads=2, head_dim=32))
    assert m.rotary_dim == 8
    q = torch.randn(1, 2, 3, 32)
    rq, _ = m.rotate(q, q, torch.arange(3))
    torch.testing.assert_close(rq[..., 8:], q[..., 8:])
    full = RotaryPositions(rotary_dim=8)
    torch.testing.assert_close(rq[..., :8], full.rotate(q[..., :8], q[..., :8], torch.arange(3))[0])


def test_rope_checks():
    with pytest.raises(ArgError, match="even head_dim, got 5"):
        RopeArgs().check(dims(d=20, heads=4))
    with pytest.raises(ArgError, match="fraction"):
        RopeArgs(fraction=0.1).check(dims(d=64, heads=4))  # 1.6 dims
    with pytest.raises(ArgError, match="head count"):
        RopeArgs().check(dims())


# ---------------------------------------------------------------------- alibi


def paper_get_slopes(n):  # ofirpress/attention_with_linear_biases, fairseq/models/transformer.py
    def get_slopes_power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        ratio = start
        return [start * ratio ** i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return (get_slopes_power_of_2(closest_power_of_2)
            + paper_get_slopes(2 * closest_power_of_2)[0::2][: n - closest_power_of_2])


@pytest.mark.parametrize("heads", [8, 12, 16, 6])
def test_alibi_slopes_match_paper(heads):
    assert alibi_slopes(heads) == pytest.approx(paper_get_slopes(heads))
    if heads == 8:
        assert alibi_slopes(8) == pytest.approx([2 ** -i for i in range(1, 9)])


def test_alibi_slopes_match_hf_bloom():
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    heads, S = 12, 5
    alibi = build_alibi_tensor(torch.ones(1, S), heads, torch.float32)  # (heads, 1, S) = slope * j
    torch.testing.assert_close(alibi[:, 0, 1], torch.tensor(alibi_slopes(heads)))


def test_alibi_bias_values():
    m = AlibiPositions.from_args(AlibiArgs(), ctx(heads=12))
    q_pos, k_pos = torch.arange(4, 7), torch.arange(7)
    bias = m.bias(q_pos, k_pos)
    assert bias.shape == (1, 12, 3, 7)
    slopes = paper_get_slopes(12)
    for h in range(12):
        for i in range(3):
            for j in range(7):
                assert bias[0, h, i, j].item() == pytest.approx(-slopes[h] * abs(4 + i - j))
    # Under a causal mask this equals the paper's slope * (j - i) up to a per-row constant.
    causal = torch.tensor(slopes)[:, None, None] * (k_pos[None, None] - q_pos[None, :, None])
    diff = (bias[0] - causal).masked_fill(k_pos[None, None] > q_pos[None, :, None], 0)
    torch.testing.assert_close(diff, torch.zeros_like(diff))
    assert n_params(m) == 0 and len(m.state_dict()) == 0
    with pytest.raises(ArgError, match="head count"):
        AlibiArgs().check(dims())


# -------------------------------------------------------------------- t5 bias


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("buckets,max_distance", [(32, 128), (16, 40), (8, 20)])
def test_t5_buckets_match_hf(bidirectional, buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 301)[None, :] + torch.tensor([0, 1])[:, None]  # a grid incl. far ones
    ours = relative_position_bucket(rel, bidirectional, buckets, max_distance)
    hf = T5Attention._relative_position_bucket(rel, bidirectional, buckets, max_distance)
    assert torch.equal(ours, hf)
    assert ours.min() >= 0 and ours.max() < buckets


@pytest.mark.parametrize("is_decoder", [False, True])
def test_t5_bias_matches_hf_compute_bias(is_decoder):
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5Attention

    cfg = T5Config(d_model=32, d_kv=8, num_heads=4, d_ff=64, vocab_size=10, is_decoder=is_decoder,
                   relative_attention_num_buckets=32, relative_attention_max_distance=128)
    hf = T5Attention(cfg, has_relative_attention_bias=True)
    args = T5BiasArgs(buckets=32, max_distance=128, bidirectional=not is_decoder)
    m = T5RelativeBias.from_args(args, ctx(heads=4))
    m.load_state_dict({"relative_attention_bias.weight": hf.relative_attention_bias.weight})
    for T, S, past in [(9, 9, 0), (1, 200, 199), (3, 160, 157)]:
        expected = hf.compute_bias(T, S, past_seen_tokens=past)
        ours = m.bias(torch.arange(past, past + T), torch.arange(S))
        assert ours.shape == (1, 4, T, S)
        torch.testing.assert_close(ours, expected)
    assert n_params(m) == args.param_count(dims(heads=4)) == 32 * 4


def test_t5_bias_checks():
    with pytest.raises(ArgError, match="head count"):
        T5BiasArgs().param_count(dims())
    with pytest.raises(ArgError, match=r"buckets \(2\) must be at least 4"):
        T5BiasArgs(buckets=2).check(dims(heads=4))
    with pytest.raises(ArgError, match=r"max_distance \(8\) must exceed the 8 exact buckets"):
        T5BiasArgs(max_distance=8).check(dims(heads=4))


# ----------------------------------------------------------- registry, counts


def test_registered_kinds():
    acts = {name: REGISTRY.args("position", name).acts for name in REGISTRY.kinds("position")}
    assert acts == {"sinusoidal": "embedding", "learned": "embedding", "rope": "qk",
                    "alibi": "bias", "t5_bias": "bias", "relative_xl": "scores",
                    "disentangled": "scores", "shaw": "scores", "cope": "scores"}
    built = {n for n in acts if REGISTRY.implementations("position", n)}
    assert built >= {"sinusoidal", "learned", "rope", "alibi", "t5_bias", "disentangled"}
    d = dims(d=64, heads=4, context=128)
    for name in acts:  # the cost model answers for every kind with default-ish arguments
        args = REGISTRY.args("position", name)(**({"max_len": 128} if name == "learned" else {}))
        args.check(d)
        assert args.param_count(d) >= 0
        assert args.flops_per_token(d, 128) == 0 or name in ("shaw", "cope")  # their terms


@pytest.mark.parametrize("name,args", [
    ("sinusoidal", {}), ("sinusoidal", {"max_len": 64}), ("learned", {"max_len": 40}),
    ("learned", {"max_len": 40, "padding_idx": 0}), ("rope", {}), ("rope", {"fraction": 0.5}),
    ("alibi", {}), ("t5_bias", {}), ("t5_bias", {"buckets": 8, "max_distance": 16}),
    ("shaw", {}), ("shaw", {"max_distance": 0, "values": False}), ("cope", {}),
])
def test_param_count_equals_built(name, args):
    d = dims(d=32, heads=4, context=32)
    a = REGISTRY.args("position", name)(**args)
    a.check(d)
    (impl,) = REGISTRY.implementations("position", name)
    m = impl.build(a, BuildContext(dims=d))
    assert a.param_count(d) == n_params(m)
    assert m.acts == a.acts


@pytest.mark.parametrize("buckets,max_rel,norm", [(256, -1, True), (16, -1, False), (-1, 24, True),
                                                   (-1, -1, True)])
def test_disentangled_position_count_matches_hf_deberta(buckets, max_rel, norm):
    from transformers import DebertaV2Config
    from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Encoder

    cfg = DebertaV2Config(hidden_size=32, num_attention_heads=4, intermediate_size=64,
                          num_hidden_layers=0, relative_attention=True, position_buckets=buckets,
                          max_relative_positions=max_rel, max_position_embeddings=48,
                          norm_rel_ebd="layer_norm" if norm else "none")
    hf = DebertaV2Encoder(cfg)
    args = DisentangledPositionArgs(buckets=buckets, max_relative_positions=max_rel, norm=norm)
    assert args.param_count(dims(d=32, context=48)) == n_params(hf)


def test_declared_counts():
    d = dims(d=64, heads=4)
    assert RelativeXLPositionArgs().param_count(d) == 0
    assert ShawArgs(max_distance=16).param_count(d) == 2 * 33 * 16
    assert ShawArgs(max_distance=16, values=False).param_count(d) == 33 * 16
    assert CopeArgs(max_positions=10).param_count(d) == 10 * 16
    with pytest.raises(ArgError, match="max_relative_positions"):
        DisentangledPositionArgs(buckets=0).check(dims())
