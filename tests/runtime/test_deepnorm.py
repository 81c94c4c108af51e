"""DeepNorm (Wang et al. 2022): LN(alpha * x + f(x)) written out per sublayer, alpha and beta
from the depth (the paper's Table 1), the beta-scaled Xavier initialisation, the spec, and
aot_eager fullgraph with decoding == the full forward."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import txdsl
from test_layer import naive_attention
from txdsl.runtime.deepnorm import deepnorm_constants

SPEC = """
model deep_tiny {
  vocab = 40; d_model = 32; heads = 4
  embedding { tokens = vocab; position = learned(max_len: 32) }
  encoder(3) { residual = deepnorm; norm = layernorm; attention = full(heads: heads)
               ffn = mlp(hidden: 64, act: relu) }
  decoder(2) { residual = deepnorm; norm = layernorm; attention = full(heads: heads)
               cross_attention = full(heads: heads); ffn = mlp(hidden: 64, act: relu) }
  head = lm
}
"""


@pytest.fixture(scope="module")
def model():
    return txdsl.build(SPEC, backend="eager", seed=0).module


def test_constants_are_the_papers():
    assert deepnorm_constants("decoder", 0, 6) == pytest.approx((12 ** 0.25, 48 ** -0.25))
    assert deepnorm_constants("encoder", 6, 0) == pytest.approx((12 ** 0.25, 48 ** -0.25))
    N, M = 3, 2
    assert deepnorm_constants("encoder", N, M) == pytest.approx(
        (0.81 * (N ** 4 * M) ** (1 / 16), 0.87 * (N ** 4 * M) ** (-1 / 16)))
    assert deepnorm_constants("decoder", N, M) == pytest.approx((6 ** 0.25, 24 ** -0.25))


def test_layers_carry_alpha_and_the_beta_init(model):
    for stack, role in ((model.encoder, "encoder"), (model.decoder, "decoder")):
        alpha, beta = deepnorm_constants(role, 3, 2)
        for layer in stack.layers:
            assert layer.alpha == pytest.approx(alpha)
            up, v = layer.ffn.up.weight, layer.attention.v_proj.weight
            xavier = math.sqrt(2 / sum(up.shape))  # std of xavier_normal_ with gain 1
            assert up.std().item() == pytest.approx(beta * xavier, rel=0.1)
            assert v.std().item() == pytest.approx(beta * math.sqrt(2 / 64), rel=0.15)
            assert layer.attention.q_proj.weight.std().item() == pytest.approx(
                math.sqrt(2 / 64), rel=0.15)


def test_forward_is_the_equation(model):
    layer = model.decoder.layers[1]
    x, mem = torch.randn(2, 6, 32), torch.randn(2, 5, 32)
    a = layer.alpha
    with torch.no_grad():
        h = layer.attention_norm(a * x + naive_attention(layer.attention, x, causal=True))
        h = layer.cross_attention_norm(a * h + naive_attention(layer.cross_attention, h, mem))
        expected = layer.ffn_norm(a * h + layer.ffn.down(layer.ffn.up(h).relu()))
        got = layer(x, mask=txdsl.sdk.AttentionMask(causal=True), memory=mem)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_decodes_and_compiles(model):
    model.eval()
    src, tgt = torch.randint(0, 40, (1, 7)), torch.randint(0, 40, (1, 6))
    full = model(input_ids=src, decoder_input_ids=tgt).logits
    cache = model.new_cache(batch=1, capacity=6)
    steps = [model(input_ids=src, decoder_input_ids=tgt[:, t:t + 1], past_key_values=cache,
                   use_cache=True).logits for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    compiled = torch.compile(model.train(), backend="aot_eager", fullgraph=True)
    compiled(input_ids=src, decoder_input_ids=tgt).logits.square().mean().backward()


def test_the_spec_checks_and_builds():
    spec = Path(__file__).resolve().parents[2] / "specs" / "deepnet.tx"
    ir = txdsl.parse_file(spec)
    assert {layer.residual for s in ir.stacks for layer in s.layers} == {"deepnorm"}
