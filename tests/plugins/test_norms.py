"""Norms against their defining formulas, torch.nn.LayerNorm and HF's RMSNorms."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import txdsl_norms
from txdsl.plugins import load_registry
from txdsl.sdk import BuildContext, Dims

REGISTRY = load_registry({"norms": txdsl_norms})
D = 16


def build(kind: str, width: int = D, **args) -> nn.Module:
    impl = REGISTRY.implementations("norm", kind)[0]
    dims = Dims(d_model=2 * width, width=width, embed_size=width)
    return impl.build(impl.args(**args), BuildContext(dims=dims))


def randomise(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    return module


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def x(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return (torch.randn(*shape) * 3 + 1).to(dtype)


# ------------------------------------------------------------------ layernorm


def test_layernorm_matches_formula_and_torch():
    norm = randomise(build("layernorm"))
    assert [n for n, _ in norm.named_parameters()] == ["weight", "bias"]
    h = x(2, 5, D)
    mean = h.mean(-1, keepdim=True)
    var = ((h - mean) ** 2).mean(-1, keepdim=True)
    expected = (h - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias
    torch.testing.assert_close(norm(h), expected, atol=1e-5, rtol=1e-5)

    ref = nn.LayerNorm(D, eps=1e-5)
    ref.load_state_dict(norm.state_dict())
    torch.testing.assert_close(norm(h), ref(h), atol=1e-6, rtol=1e-6)


def test_layernorm_without_bias_and_eps_honoured():
    norm = randomise(build("layernorm", bias=False, eps=0.5))
    assert [n for n, _ in norm.named_parameters()] == ["weight"]
    h = x(3, D) * 0.1  # small variance: eps = 0.5 dominates
    ref = nn.LayerNorm(D, eps=0.5, bias=False)
    ref.load_state_dict(norm.state_dict())
    torch.testing.assert_close(norm(h), ref(h), atol=1e-6, rtol=1e-6)
    small_eps = build("layernorm", bias=False, eps=1e-5)
    small_eps.load_state_dict(norm.state_dict())
    assert (norm(h) - small_eps(h)).abs().max() > 0.1


# -------------------------------------------------------------------- rmsnorm


def rms_formula(h: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return h / torch.sqrt((h * h).mean(-1, keepdim=True) + eps) * weight


def test_rmsnorm_matches_formula_llama_and_t5():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    norm = randomise(build("rmsnorm"))
    assert norm.eps == 1e-6 and [n for n, _ in norm.named_parameters()] == ["weight"]
    h = x(2, 7, D)
    torch.testing.assert_close(norm(h), rms_formula(h, norm.weight, 1e-6), atol=1e-5, rtol=1e-5)
    for ref in (LlamaRMSNorm(D, eps=1e-6), T5LayerNorm(D, eps=1e-6)):
        ref.load_state_dict(norm.state_dict())
        torch.testing.assert_close(norm(h), ref(h), atol=1e-6, rtol=1e-6)


def test_rmsnorm_eps_honoured():
    norm = randomise(build("rmsnorm", eps=2.0))
    h = x(4, D) * 0.2
    torch.testing.assert_close(norm(h), rms_formula(h, norm.weight, 2.0), atol=1e-6, rtol=1e-5)
    assert (norm(h) - rms_formula(h, norm.weight, 1e-6)).abs().max() > 0.1


def test_rmsnorm_bf16_like_llama():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = randomise(build("rmsnorm")).to(torch.bfloat16)
    ref = LlamaRMSNorm(D, eps=1e-6).to(torch.bfloat16)
    ref.load_state_dict(norm.state_dict())
    h = x(2, 3, D, dtype=torch.bfloat16)
    out = norm(h)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, ref(h))  # same float32 statistic, same cast back
    expected = rms_formula(h.float(), norm.weight.float(), 1e-6)
    torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=2e-2)


def test_rmsnorm_offset_matches_gemma():
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    norm = build("rmsnorm", offset=True)
    assert torch.equal(norm.weight, torch.zeros(D))  # starts as the identity scale
    randomise(norm)
    ref = GemmaRMSNorm(D, eps=1e-6)
    ref.load_state_dict(norm.state_dict())
    for dtype in (torch.float32, torch.bfloat16):
        h = x(2, 3, D, dtype=dtype)
        torch.testing.assert_close(norm(h), ref(h), atol=1e-6, rtol=1e-6)
    h = x(5, D)
    torch.testing.assert_close(norm(h), rms_formula(h, 1 + norm.weight, 1e-6), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------- scalenorm / fixnorm


def test_scalenorm_formula_and_init():
    norm = build("scalenorm")
    assert [(n, tuple(p.shape)) for n, p in norm.named_parameters()] == [("g", ())]
    assert norm.g.item() == pytest.approx(math.sqrt(D))
    with torch.no_grad():
        norm.g.fill_(1.7)
    h = x(2, 5, D)
    expected = 1.7 * h / torch.linalg.vector_norm(h, dim=-1, keepdim=True)
    torch.testing.assert_close(norm(h), expected, atol=1e-5, rtol=1e-5)


def test_scalenorm_eps_clamps_small_norms():
    norm = build("scalenorm", eps=1.0)
    h = torch.full((3, D), 0.01)  # ||h|| = 0.04 < eps
    torch.testing.assert_close(norm(h), norm.g * h / 1.0)
    zero = build("scalenorm")(torch.zeros(2, D))
    assert torch.equal(zero, torch.zeros(2, D))  # no NaN from 0 / 0


def test_fixnorm_is_unlearned_projection():
    norm = build("fixnorm", scale=2.5)
    assert list(norm.parameters()) == []
    h = x(2, 4, D)
    out = norm(h)
    torch.testing.assert_close(out, 2.5 * h / h.norm(dim=-1, keepdim=True), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.norm(dim=-1), torch.full((2, 4), 2.5))
    torch.testing.assert_close(build("fixnorm", eps=1.0)(h * 1e-3), h * 1e-3)  # radius < eps


# ------------------------------------------------------------------ batchnorm


def bn_ref(ref: nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
    return ref(h.transpose(1, 2)).transpose(1, 2)  # (B, T, D) -> (B, D, T) and back


def test_batchnorm_matches_batchnorm1d_on_transposed_input():
    norm = randomise(build("batchnorm", momentum=0.3, eps=1e-3))
    assert [n for n, _ in norm.named_parameters()] == ["weight", "bias"]
    ref = nn.BatchNorm1d(D, eps=1e-3, momentum=0.3)
    ref.load_state_dict(norm.state_dict())
    h = x(4, 6, D)
    torch.testing.assert_close(norm(h), bn_ref(ref, h), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.running_mean, ref.running_mean)
    # training statistics are over every token of the batch (B * T), biased variance
    flat = h.reshape(-1, D)
    expected = (h - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + 1e-3)
    torch.testing.assert_close(norm(h), expected * norm.weight + norm.bias, atol=1e-4, rtol=1e-4)
    ref.load_state_dict(norm.state_dict())  # running statistics, after norm's extra step
    norm.eval(), ref.eval()
    torch.testing.assert_close(norm(h), bn_ref(ref, h), atol=1e-5, rtol=1e-5)


def test_batchnorm_couples_examples_layernorm_does_not():
    """Why Transformers use LayerNorm: a BatchNorm output depends on the rest of the batch."""
    h = x(2, 5, D)
    other = h.clone()
    other[1] = other[1] * 10 + 3  # change only the second example
    bn, ln = build("batchnorm"), build("layernorm")
    assert not torch.allclose(bn(h)[0], bn(other)[0], atol=1e-3)
    torch.testing.assert_close(ln(h)[0], ln(other)[0])


# --------------------------------------------------------------- all of them

KINDS = ["layernorm", "rmsnorm", "scalenorm", "fixnorm", "batchnorm"]


def test_every_norm_is_tested():
    assert REGISTRY.kinds("norm") == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_close_to_fp32(kind):
    norm = randomise(build(kind))
    h = x(2, 5, D)
    expected = norm(h)
    mixed = norm(h.to(torch.bfloat16))  # fp32 weights, bf16 activations (as under autocast)
    torch.testing.assert_close(mixed.float(), expected, atol=0.1, rtol=3e-2)
    low = norm.to(torch.bfloat16)(h.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16 and low.shape == h.shape
    torch.testing.assert_close(low.float(), expected, atol=0.1, rtol=3e-2)


@pytest.mark.parametrize("kind", KINDS)
def test_acts_on_width_and_keeps_shape(kind):
    norm = build(kind, width=8)  # dims.d_model is 16: the norm must use width
    for shape in ((3, 8), (2, 1, 8), (2, 2, 3, 8)):
        assert norm(x(*shape)).shape == shape


def test_bad_arguments_are_rejected():
    args = REGISTRY.args
    with pytest.raises(ValidationError):
        args("norm", "layernorm")(eps=0.0)
    with pytest.raises(ValidationError):
        args("norm", "rmsnorm")(eps=-1e-6)
    with pytest.raises(ValidationError):
        args("norm", "rmsnorm")(epsilon=1e-6)  # extra="forbid": a typo is an error
    with pytest.raises(ValidationError):
        args("norm", "batchnorm")(momentum=0.0)
