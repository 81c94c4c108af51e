"""Linearized kinds beyond their equations: Performer converges to softmax, redraws
deterministically; compiles without graph breaks; the CLI verifies them; bad specs
are refused with located messages; the fixed-budget copy task trains."""

from __future__ import annotations

import pytest
import torch

import txdsl
import txdsl_attention
from copy_task import assert_trains, copy_spec, full_baseline, train
from txdsl.cli import main
from txdsl.plugins import load_registry
from txdsl.sdk.attention import AttentionMask, softmax_attention
from txdsl.sdk.testing import D, attention_subjects
from txdsl_attention.linear import forms
from txdsl_attention.linear.performer import orthogonal_features

REGISTRY = load_registry({"attention": txdsl_attention})
KINDS = ["linear", "performer", "cosformer"]


def performer_error(m: int, seed: int) -> float:
    """Relative error of FAVOR+ with ``m`` features vs exact softmax attention."""
    g = torch.Generator().manual_seed(100 + seed)
    d, T = 16, 32
    q, k = (torch.randn(1, 2, T, d, generator=g) * 0.7 for _ in range(2))
    v = torch.randn(1, 2, T, d, generator=g)
    exact = softmax_attention(q, k, v, mask=AttentionMask(), scale=d ** -0.5)
    W = orthogonal_features(m, d, torch.Generator().manual_seed(seed))

    def phi(x):
        x = x / d ** 0.25
        return torch.exp(x @ W.T - (x * x).sum(-1, keepdim=True) / 2)
    approx = forms.bidirectional(phi(q), phi(k), v)
    return ((approx - exact).norm() / exact.norm()).item()


def test_performer_error_decreases_as_features_grow():
    counts = (8, 32, 128, 512)
    errors = [sum(performer_error(m, s) for s in range(5)) / 5 for m in counts]  # 5 seeds
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 3, errors  # ~1/sqrt(m): 8 -> 512 is 8x fewer errors


def test_orthogonal_blocks_are_orthogonal():
    W = orthogonal_features(32, 16, torch.Generator().manual_seed(0))
    block = W[:16] / W[:16].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(16), atol=1e-5, rtol=0)


def make(kind: str, impl: str = "chunked", **args):
    (s,) = attention_subjects(REGISTRY, [kind], {kind: args})[:1] if impl == "chunked" else [
        x for x in attention_subjects(REGISTRY, [kind], {kind: args}) if x.impl == impl]
    return s.make()


def test_performer_features_are_seeded_and_redrawn_every_n_training_forwards():
    a, b = make("performer", seed=3), make("performer", seed=3)
    assert torch.equal(a.projection, b.projection)  # deterministic per build
    assert not torch.equal(a.projection, make("performer", seed=4).projection)
    m = make("performer", redraw=2).train()
    x, mask, first = torch.randn(2, 8, D), AttentionMask(causal=True), m.projection.clone()
    m(x, mask=mask)
    assert torch.equal(m.projection, first)
    m(x, mask=mask)
    assert not torch.equal(m.projection, first)  # the 2nd forward drew anew
    again = make("performer", redraw=2).train()
    again(x, mask=mask), again(x, mask=mask)
    assert torch.equal(again.projection, m.projection)  # redraws repeat too
    m.eval()(x, mask=mask), m(x, mask=mask)
    assert m.draws == 1  # no redraw outside training


@pytest.mark.parametrize("kind", KINDS)
def test_compiles_without_graph_breaks(kind):
    m = make(kind)
    x, pad = torch.randn(2, 19, D), torch.ones(2, 19, dtype=torch.bool)
    pad[0, :3] = False
    mask = AttentionMask(causal=True, key_padding=pad)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, mask=mask), m(x, mask=mask))


@pytest.mark.slow
def test_inductor_forward_and_backward():
    """One real inductor build of the family (chunked linear attention), with gradients."""
    m = make("linear")
    x = torch.randn(2, 37, D, requires_grad=True)
    mask = AttentionMask(causal=True)
    compiled = torch.compile(m, backend="inductor", fullgraph=True)
    y = compiled(x, mask=mask)
    y.square().sum().backward()
    g = x.grad.clone()
    x.grad = None
    m(x, mask=mask).square().sum().backward()
    torch.testing.assert_close(g, x.grad, atol=1e-4, rtol=1e-4)


def test_verify_passes(capsys):
    assert main(["verify", *KINDS]) == 0
    out = capsys.readouterr().out
    assert "linear" in out and "performer" in out and "cosformer" in out


SPEC = """
model m {{
  vocab = 50; d_model = 32; heads = 4; layers = 1; context = 64
  embedding {{ tokens = vocab }}
  decoder(layers) {{
    norm = layernorm{position}
    attention = {attention}
    ffn = mlp(hidden: 64)
  }}
  heads {{ lm = lm(tied: true) }}
}}
"""


def check(tmp_path, capsys, attention, position=""):
    path = tmp_path / "bad.tx"
    path.write_text(SPEC.format(attention=attention, position=position))
    code = main(["check", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("position", ["alibi", "t5_bias(bidirectional: false)"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_bias_only_position_is_refused_where_it_is_written(tmp_path, capsys, kind, position):
    code, err = check(tmp_path, capsys, f"{kind}(heads: heads)", f"; position = {position}")
    assert code == 1
    assert "bad.tx:6:" in err and f"can't use position '{position.split('(')[0]}'" in err
    assert "never forms a score matrix" in err and "^" in err and "Traceback" not in err


def test_rope_is_accepted(tmp_path, capsys):
    assert check(tmp_path, capsys, "performer(heads: heads)", "; position = rope")[0] == 0


@pytest.mark.parametrize("attention, says", [
    ("linear(heads: heads, dropout: 0.1)", "dropout: 0.1 has nothing to act on"),
    ("cosformer(heads: heads, horizon: 32)", "horizon (32) is shorter than the context (64)"),
    ("linear(heads: heads, feature_map: tanh)", "feature_map"),
])
def test_bad_arguments_are_located(tmp_path, capsys, attention, says):
    code, err = check(tmp_path, capsys, attention)
    assert code == 1 and says in err and "bad.tx:7:" in err and "Traceback" not in err


# The training bar (tests/copy_task.py): 80 AdamW steps of the copy task, d_model 64,
# 2 layers, learned positions. Measured (seed 0, eval loss initial -> final):
#   full attention                       2.797 -> 0.045
#   performer(features: 64)              2.797 -> 0.044   passes
#   cosformer                            2.797 -> 0.025   passes
#   linear(feature_map: relu)            2.796 -> 0.031   passes
#   linear (elu + 1, gain 4: default)    2.797 -> 0.042   passes
#   linear(feature_map: softplus)        2.797 -> 0.039   passes
#   linear(gain: 1), the paper's start   2.797 -> 1.725   misses (160 steps: 0.015)
# gain 1 leaves the initial q, k (~0.16 under the N(0, 0.02) init) in elu + 1's affine
# regime, 1 + x: every key weighs about the same, a plateau (softplus at gain 1: 1.873).
# relu is homogeneous (the gain cancels). Seeds 1, 2: full 0.047, 0.055; linear 0.053, 0.041.
@pytest.mark.slow
@pytest.mark.parametrize("attention", [
    "performer(heads: heads, features: 64)", "cosformer(heads: heads)",
    "linear(heads: heads, feature_map: relu)", "linear(heads: heads)",
    "linear(heads: heads, feature_map: softplus)",
    pytest.param("linear(heads: heads, gain: 1)", marks=pytest.mark.xfail(
        strict=True, reason="the paper's start: measured 2.797 -> 1.725 vs full's 0.045 "
        "(a plateau at this budget; 160 steps reach 0.015)")),
])
def test_copy_task_trains_within_2x_of_full_attention(attention):
    full = full_baseline(copy_spec("full(heads: heads)", "full"))
    model = txdsl.build(copy_spec(attention), backend="eager", seed=0).module
    assert_trains(train(model), full)


@pytest.mark.parametrize("kind", ["linear", "performer"])
@torch.no_grad()
def test_a_decode_step_compiles_without_graph_breaks(kind):
    """The recurrent state is updated in place, so a compiled step keeps its shapes."""
    m, x = make(kind), torch.randn(2, 6, D)
    eager_state, state = m.new_state(2, 8), m.new_state(2, 8)
    step = torch.compile(m, backend="aot_eager", fullgraph=True)
    for t in range(3):
        mask = AttentionMask(causal=True, q_slots=torch.tensor([t]))
        torch.testing.assert_close(step(x[:, t:t + 1], mask=mask, cache=state),
                                   m(x[:, t:t + 1], mask=mask, cache=eager_state))
    torch.testing.assert_close(state.S, eager_state.S)
