"""The attention call contract (txdsl.sdk.attention), for EVERY buildable implementation.

Each registered implementation is built from its kind's argument model and
run through the same mask cases: an implementation that ignores a mask
would be silently wrong, so it fails here instead. A new kind that needs
arguments beyond ``heads`` adds them to ``EXAMPLE_ARGS``.
"""

from __future__ import annotations

import pytest
import torch

import txdsl_attention
import txdsl_positions
from txdsl.plugins import load_registry
from txdsl.sdk import BuildContext, Dims
from txdsl.sdk.attention import AttentionMask, KVCache

REGISTRY = load_registry({"attention": txdsl_attention, "positions": txdsl_positions})
D, H, B, T, S = 32, 4, 2, 6, 9
EXAMPLE_ARGS: dict[str, dict] = {}  # kind -> arguments besides heads, for kinds that need them
IMPLS = [(name, impl) for name in REGISTRY.kinds("attention")
         for impl in REGISTRY.implementations("attention", name)]


def _build(name, impl, seed=0):
    args = REGISTRY.args("attention", name).model_validate(
        {"heads": H, **EXAMPLE_ARGS.get(name, {})})
    ctx = BuildContext(dims=Dims(d_model=D, width=D, embed_size=D))
    args.check(ctx.dims)
    torch.manual_seed(seed)
    return impl.build(args, ctx).eval()


@pytest.fixture(params=IMPLS, ids=[f"{n}[{i.impl}]" for n, i in IMPLS])
def attn(request):
    name, impl = request.param
    return name, _build(name, impl)


def _padding():
    pad = torch.ones(B, S, dtype=torch.bool)
    pad[0, 4:] = False
    pad[1, :2] = False
    return pad


def test_there_is_something_to_test():
    assert ("full", "reference") in [(n, i.impl) for n, i in IMPLS]


def test_output_shape(attn):
    _, m = attn
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    assert m(x, mask=AttentionMask()).shape == (B, T, D)
    assert m(x, memory, mask=AttentionMask()).shape == (B, T, D)
    assert m(x[:, :1], mask=AttentionMask(causal=True)).shape == (B, 1, D)


def test_causal_mask_honoured(attn):
    _, m = attn
    x = torch.randn(B, T, D)
    y = x.clone()
    y[:, 3:] = torch.randn(B, T - 3, D)  # change the future of position 2
    mask = AttentionMask(causal=True)
    torch.testing.assert_close(m(x, mask=mask)[:, :3], m(y, mask=mask)[:, :3])
    assert not torch.allclose(m(x, mask=mask)[:, 3:], m(y, mask=mask)[:, 3:])


def test_key_padding_honoured(attn):
    _, m = attn
    x = torch.randn(B, S, D)
    pad = _padding()
    y = torch.where(pad[..., None], x, torch.randn(B, S, D))  # change only padded tokens' content
    for causal in (False, True):
        mask = AttentionMask(causal=causal, key_padding=pad)
        out_x, out_y = m(x, mask=mask), m(y, mask=mask)
        # Rows of real queries that see at least one real key must not change.
        torch.testing.assert_close(out_x[pad], out_y[pad])


def test_cross_attention_padding_honoured(attn):
    _, m = attn
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    pad = _padding()
    other = torch.where(pad[..., None], memory, torch.randn(B, S, D))
    mask = AttentionMask(key_padding=pad)
    torch.testing.assert_close(m(x, memory, mask=mask), m(x, other, mask=mask))


def test_no_nan_on_fully_masked_rows(attn):
    _, m = attn
    x = torch.randn(B, T, D)
    pad = torch.ones(B, T, dtype=torch.bool)
    pad[1] = False  # batch row 1: every key is padding
    pad[0, 0] = False  # with causal: query 0 of row 0 sees only a padded key
    for causal in (False, True):
        out = m(x, mask=AttentionMask(causal=causal, key_padding=pad))
        assert torch.isfinite(out).all()
    out = m(x, torch.randn(B, S, D), mask=AttentionMask(key_padding=torch.zeros(B, S, dtype=bool)))
    assert torch.isfinite(out).all()


def test_cached_decoding_matches_full_pass(attn):
    _, m = attn
    x = torch.randn(B, T, D)
    full = m(x, mask=AttentionMask(causal=True))
    cache = KVCache()
    steps = [m(x[:, a:b], mask=AttentionMask(causal=True), cache=cache)
             for a, b in [(0, 2), (2, 5), (5, 6)]]  # chunks: T < S with T > 1, then one token
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_full_equals_reference(attn):
    name, m = attn
    if name != "full":
        pytest.skip("only full has an exact reference")
    (ref_impl,) = [i for i in REGISTRY.implementations("attention", "full") if i.impl == "reference"]
    ref = _build("full", ref_impl, seed=1)
    ref.load_state_dict(m.state_dict())
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    pad_self = _padding()[:, :T]
    for mem, mask in [(None, AttentionMask(causal=True, key_padding=pad_self)),
                      (None, AttentionMask()),
                      (memory, AttentionMask(key_padding=_padding()))]:
        torch.testing.assert_close(m(x, mem, mask=mask), ref(x, mem, mask=mask),
                                   atol=1e-5, rtol=1e-5)
