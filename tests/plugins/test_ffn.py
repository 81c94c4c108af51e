"""Feed-forward blocks against their equations and HF's GPT2MLP, LlamaMLP, T5 gated FFN."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import txdsl_ffn
from txdsl.plugins import load_registry
from txdsl.sdk import ArgError, BuildContext, Dims

REGISTRY = load_registry({"ffn": txdsl_ffn})
D, H = 12, 40
DIMS = Dims(d_model=D, width=D, embed_size=D)


def build(kind: str, dims: Dims = DIMS, **args) -> nn.Module:
    impl = REGISTRY.implementations("ffn", kind)[0]
    return impl.build(impl.args(**args), BuildContext(dims=dims)).eval()


def randomise(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The activations, written out from their papers.
ACTS = {
    "relu": lambda z: torch.where(z > 0, z, torch.zeros_like(z)),
    "gelu": lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2))),
    "gelu_tanh": lambda z: 0.5 * z * (
        1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3))),
    "silu": lambda z: z / (1 + torch.exp(-z)),
    "sigmoid": lambda z: 1 / (1 + torch.exp(-z)),
}


def lin(layer: nn.Linear, z: torch.Tensor) -> torch.Tensor:
    out = z @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


# ------------------------------------------------------------------------ mlp


@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh", "silu"])
def test_mlp_matches_equation(act):
    ffn = randomise(build("mlp", hidden=H, act=act))
    names = [n for n, _ in ffn.named_parameters()]
    assert names == ["up.weight", "up.bias", "down.weight", "down.bias"]
    x = torch.randn(2, 5, D)
    expected = lin(ffn.down, ACTS[act](lin(ffn.up, x)))
    torch.testing.assert_close(ffn(x), expected, atol=1e-5, rtol=1e-5)


def test_mlp_without_bias():
    ffn = build("mlp", hidden=H, bias=False)
    assert ffn.up.bias is None and ffn.down.bias is None


def test_mlp_matches_gpt2():
    from transformers import GPT2Config
    from transformers.models.gpt2.modeling_gpt2 import GPT2MLP

    ref = GPT2MLP(H, GPT2Config(n_embd=D, activation_function="gelu_new", resid_pdrop=0.0)).eval()
    ffn = randomise(build("mlp", hidden=H, act="gelu_tanh"))
    with torch.no_grad():  # HF's Conv1D keeps the weight as (in, out): transpose
        ref.c_fc.weight.copy_(ffn.up.weight.T)
        ref.c_fc.bias.copy_(ffn.up.bias)
        ref.c_proj.weight.copy_(ffn.down.weight.T)
        ref.c_proj.bias.copy_(ffn.down.bias)
    x = torch.randn(2, 7, D)
    torch.testing.assert_close(ffn(x), ref(x), atol=1e-5, rtol=1e-5)


def test_dropout_after_activation_only_in_training():
    ffn = randomise(build("mlp", hidden=H, dropout=0.5))
    x = torch.randn(4, 6, D)
    torch.testing.assert_close(ffn(x), build_like(ffn, "mlp", hidden=H)(x))  # eval: identity
    seen = {}
    ffn.dropout.register_forward_hook(lambda m, inp, out: seen.update(inp=inp[0], out=out))
    out = ffn.train()(x)
    torch.testing.assert_close(seen["inp"], ffn.act(ffn.up(x)))  # dropout sits after act
    dropped = seen["out"] == 0
    assert 0.3 < dropped.float().mean() < 0.7
    torch.testing.assert_close(seen["out"], torch.where(dropped, 0.0, seen["inp"] * 2))
    torch.testing.assert_close(out, ffn.down(seen["out"]))


def build_like(module: nn.Module, kind: str, **args) -> nn.Module:
    other = build(kind, **args)
    other.load_state_dict(module.state_dict())
    return other


# ------------------------------------------------------------------ GLU family

GATES = {"glu": "sigmoid", "reglu": "relu", "geglu": "gelu", "swiglu": "silu"}


@pytest.mark.parametrize("kind", sorted(GATES))
def test_glu_matches_equation(kind):
    ffn = randomise(build(kind, hidden=H))
    # default: no biases (Shazeer 2020, T5, LLaMA)
    assert [n for n, _ in ffn.named_parameters()] == ["gate.weight", "up.weight", "down.weight"]
    x = torch.randn(2, 5, D)
    expected = lin(ffn.down, ACTS[GATES[kind]](lin(ffn.gate, x)) * lin(ffn.up, x))
    torch.testing.assert_close(ffn(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(GATES))
def test_glu_with_bias(kind):
    ffn = randomise(build(kind, hidden=H, bias=True))
    assert all(layer.bias is not None for layer in (ffn.gate, ffn.up, ffn.down))
    x = torch.randn(3, D)
    expected = lin(ffn.down, ACTS[GATES[kind]](lin(ffn.gate, x)) * lin(ffn.up, x))
    torch.testing.assert_close(ffn(x), expected, atol=1e-5, rtol=1e-5)


def test_geglu_tanh_approximation():
    ffn = randomise(build("geglu", hidden=H, approximate="tanh"))
    x = torch.randn(2, 5, D)
    expected = lin(ffn.down, ACTS["gelu_tanh"](lin(ffn.gate, x)) * lin(ffn.up, x))
    torch.testing.assert_close(ffn(x), expected, atol=1e-5, rtol=1e-5)
    exact = build_like(ffn, "geglu", hidden=H)
    assert not torch.equal(exact(x), ffn(x))


def test_swiglu_matches_llama():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    ref = LlamaMLP(LlamaConfig(hidden_size=D, intermediate_size=H, num_attention_heads=2,
                                 num_key_value_heads=2, hidden_act="silu", mlp_bias=False))
    ffn = randomise(build("swiglu", hidden=H))
    with torch.no_grad():
        ref.gate_proj.weight.copy_(ffn.gate.weight)
        ref.up_proj.weight.copy_(ffn.up.weight)
        ref.down_proj.weight.copy_(ffn.down.weight)
    x = torch.randn(2, 7, D)
    torch.testing.assert_close(ffn(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("approximate, hf_act", [("tanh", "gelu_new"), ("none", "gelu")])
def test_geglu_matches_t5_gated(approximate, hf_act):
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5DenseGatedActDense

    config = T5Config(d_model=D, d_ff=H, dense_act_fn=hf_act, dropout_rate=0.0)
    ref = T5DenseGatedActDense(config).eval()
    ffn = randomise(build("geglu", hidden=H, approximate=approximate))
    with torch.no_grad():  # T5: wi_0 is the gate (through the activation), wi_1 the linear arm
        ref.wi_0.weight.copy_(ffn.gate.weight)
        ref.wi_1.weight.copy_(ffn.up.weight)
        ref.wo.weight.copy_(ffn.down.weight)
    x = torch.randn(2, 7, D)
    torch.testing.assert_close(ffn(x), ref(x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ the rest


def test_every_ffn_is_tested():
    assert REGISTRY.kinds("ffn") == sorted(["mlp", "moe", *GATES])


@pytest.mark.parametrize("kind", ["mlp", *sorted(GATES)])
def test_acts_on_width_and_bf16(kind):
    dims = Dims(d_model=2 * D, width=D, embed_size=D)  # acts on width, not d_model
    ffn = randomise(build(kind, dims, hidden=H))
    x = torch.randn(2, 1, D)
    expected = ffn(x)
    low = ffn.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16 and low.shape == (2, 1, D)
    torch.testing.assert_close(low.float(), expected, atol=5e-2, rtol=5e-2)


def test_moe_is_counted():  # built and tested in test_moe.py
    assert REGISTRY.has("ffn", "moe") and len(REGISTRY.implementations("ffn", "moe")) == 1
    moe = REGISTRY.args("ffn", "moe")
    gated = moe(hidden=H, experts=8)
    assert gated.param_count(DIMS) == 8 * 3 * D * H + D * 8
    plain = moe(hidden=H, experts=4, gated=False, bias=True, act="gelu")
    assert plain.param_count(DIMS) == 4 * (D * H + H + H * D + D) + D * 4
    # only top_k experts run per token, plus the router
    assert gated.flops_per_token(DIMS, 128) == 2 * D * 8 + 2 * 2 * 3 * D * H
    with pytest.raises(ArgError, match=r"top_k \(3\) is larger than experts \(2\)") as err:
        moe(hidden=H, experts=2, top_k=3).check(DIMS)
    assert err.value.arg == "top_k"


def test_bad_arguments_are_rejected():
    args = REGISTRY.args
    with pytest.raises(ValidationError):
        args("ffn", "mlp")(hidden=H, act="swish")
    with pytest.raises(ValidationError):
        args("ffn", "mlp")(hidden=0)
    with pytest.raises(ValidationError):
        args("ffn", "swiglu")(hidden=H, act="gelu")  # the gate's activation is the kind
    with pytest.raises(ValidationError):
        args("ffn", "geglu")(hidden=H, approximate="erf")
    with pytest.raises(ValidationError):
        args("ffn", "mlp")(hidden=H, dropout=1.0)
