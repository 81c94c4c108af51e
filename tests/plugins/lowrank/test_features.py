"""Continuous inputs (``features = N`` in the embedding): a ``(B, T, N)`` float model input
projected by ``Linear(N, E)``, checked at the boundary, exported by the example inputs; a
set model (inducing attention, no positions, mean pooling) is permutation-invariant."""

from __future__ import annotations

import pytest
import torch

import txdsl
from txdsl.back.inputs import example_inputs
from txdsl.plugins import get_registry

SET_MODEL = """
model tiny_set {
  d_model = 32; heads = 4; layers = 2; context = 64
  embedding { features = 3 }
  encoder(layers) {
    residual = pre; norm = layernorm
    attention = inducing(heads: heads, m: 4)
    ffn = mlp(hidden: 64)
    final_norm = layernorm
  }
  head = classifier(classes: 5, pool: mean)
}
"""


@pytest.fixture(scope="module")
def built():
    return txdsl.build(SET_MODEL, backend="eager", seed=0)


@torch.no_grad()
def test_the_embedding_is_a_linear_map_of_the_features(built):
    model = built.module.eval()
    x = torch.randn(2, 9, 3)
    lin = model.embedding.features
    torch.testing.assert_close(model.embedding(features=x), x @ lin.weight.T + lin.bias)
    assert model(features=x).logits.shape == (2, 5)


@torch.no_grad()
def test_a_set_model_is_permutation_invariant(built):
    model = built.module.eval()
    x = torch.randn(2, 9, 3) * 3
    out = model(features=x).logits
    moved = model(features=x[:, torch.randperm(9)]).logits
    assert (out - moved).abs().max() < 1e-5
    assert (out - model(features=x[:, :8]).logits).abs().max() > 1e-4  # it does read the set


def test_show_counts_the_parameters_it_builds(built):
    from txdsl.front.estimate import estimate

    ir = txdsl.parse(SET_MODEL)
    said = estimate(ir, get_registry()).params_by_component["embedding"]
    assert said == 3 * 32 + 32 == sum(p.numel() for p in built.module.embedding.parameters())


@pytest.mark.parametrize("value, error, words", [
    (torch.randint(0, 3, (2, 9, 3)), TypeError, "features must be a floating-point tensor"),
    (torch.randn(2, 9, 3, dtype=torch.float64), TypeError, "has dtype torch.float64"),
    (torch.randn(2, 9), ValueError, "features must have 3 dimensions"),
    (torch.randn(2, 9, 4), ValueError, "features has 4 values per position, but the model "
                                       "takes 3"),
    (torch.randn(2, 65, 3), ValueError, "the model's context is 64"),
])
def test_the_boundary_refuses_bad_features(built, value, error, words):
    with pytest.raises(error, match=words):
        built.module(features=value)


def test_token_and_feature_models_refuse_each_others_inputs(built):
    with pytest.raises(ValueError, match="takes features"):
        built.module(input_ids=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="give features"):
        built.module()
    tokens = txdsl.build(SET_MODEL.replace("features = 3", "tokens = 10"), backend="eager").module
    with pytest.raises(ValueError, match="not features"):
        tokens(features=torch.randn(2, 4, 3))


def test_tokens_and_features_together_are_a_spec_error():
    with pytest.raises(txdsl.SpecError) as err:
        txdsl.parse(SET_MODEL.replace("features = 3", "features = 3; tokens = 10"))
    assert "pick one input" in err.value.render()


def test_example_inputs_are_features():
    ir = txdsl.parse(SET_MODEL)
    inputs = example_inputs(ir, get_registry(), batch=2, seq=5)
    assert set(inputs) == {"features"} and inputs["features"].shape == (2, 5, 3)
    assert inputs["features"].dtype == torch.float32


@pytest.mark.parametrize("spec", ["set_transformer", "informer"])
def test_specs_parse(spec):
    from pathlib import Path

    ir = txdsl.parse_file(Path(__file__).resolve().parents[3] / "specs" / f"{spec}.tx")
    assert ir.embedding.features in (2, 7) and ir.embedding.tokens is None
