"""The mixture-of-experts FFN against Hugging Face's Switch Transformers (top-1, capacity) and
Mixtral (top-2) blocks with the same weights, a naive per-token loop (GShard capacity order),
one expert == its FFN, the auxiliary losses through a built model, aot_eager fullgraph and
the training bar (switch-like decoder on the copy task)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import txdsl
import txdsl_ffn
from copy_task import assert_trains, copy_spec, full_baseline, train
from txdsl.plugins import load_registry
from txdsl.sdk import BuildContext, Dims, StackState

REGISTRY = load_registry({"ffn": txdsl_ffn})
D, H, E = 16, 24, 4
DIMS = Dims(d_model=D, width=D, embed_size=D)


def build(kind: str = "moe", **args) -> nn.Module:
    impl = REGISTRY.implementations("ffn", kind)[0]
    module = impl.build(impl.args(**args), BuildContext(dims=DIMS))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)  # large enough that routing mistakes show
    return module


def test_switch_top1_with_capacity_matches_hf():
    from transformers.models.switch_transformers import modeling_switch_transformers as sw

    T, cf = 16, 0.75  # capacity ceil(0.75 * 16 / 4) = 3 tokens per expert per sequence
    moe = build(hidden=H, experts=E, top_k=1, act="relu", gated=False, normalize=False,
                capacity_factor=cf).train()
    config = sw.SwitchTransformersConfig(d_model=D, d_ff=H, num_experts=E, expert_capacity=3,
                                         router_bias=False, router_jitter_noise=0.0,
                                         dense_act_fn="relu", dropout_rate=0.0)
    ref = sw.SwitchTransformersSparseMLP(config).train()
    with torch.no_grad():
        ref.router.classifier.weight.copy_(moe.router.weight)
        for i, expert in enumerate(moe.experts):
            ref.experts[f"expert_{i}"].wi.weight.copy_(expert.up.weight)
            ref.experts[f"expert_{i}"].wo.weight.copy_(expert.down.weight)
    x = torch.randn(2, T, D)
    state = StackState()
    out = moe(x, state=state)
    expected = ref(x)
    dropped = (expected.abs().sum(-1) == 0).sum()
    assert dropped > 0  # the capacity really drops tokens here
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # the load-balancing loss: HF computes it per sequence (a group); one sequence here
    logits = ref.router(x[:1])[2]
    hf_loss = sw.load_balancing_loss_func(torch.softmax(logits, -1), logits.argmax(-1))
    state1 = StackState()
    moe(x[:1], state=state1)
    torch.testing.assert_close(state1.aux_losses["load_balancing"], 0.01 * hf_loss)
    assert moe.eval()(x).abs().sum(-1).min() > 0  # no dropping at evaluation


def test_mixtral_top2_matches_hf():
    from transformers.models.mixtral import modeling_mixtral as mx

    moe = build(hidden=H, experts=E, top_k=2, act="silu", z_weight=0.1).eval()
    config = mx.MixtralConfig(hidden_size=D, intermediate_size=H, num_local_experts=E,
                              num_experts_per_tok=2, hidden_act="silu", router_jitter_noise=0.0)
    ref = mx.MixtralSparseMoeBlock(config).eval()
    with torch.no_grad():
        ref.gate.weight.copy_(moe.router.weight)
        for i, expert in enumerate(moe.experts):
            ref.experts.gate_up_proj[i].copy_(torch.cat([expert.gate.weight, expert.up.weight]))
            ref.experts.down_proj[i].copy_(expert.down.weight)
    x = torch.randn(3, 7, D)
    state = StackState()
    out = moe(x, state=state)
    torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=1e-5)
    logits = nn.functional.linear(x.reshape(-1, D), moe.router.weight)
    hf_loss = mx.load_balancing_loss_func((logits,), E, 2)
    torch.testing.assert_close(state.aux_losses["load_balancing"], 0.01 * hf_loss)
    z = (torch.logsumexp(logits, -1) ** 2).mean()  # Zoph et al. 2022, eq. 5
    torch.testing.assert_close(state.aux_losses["router_z"], 0.1 * z)


def naive_moe(moe, x: torch.Tensor, capacity: int | None) -> torch.Tensor:
    """Token by token: top-k experts, renormalised weights, GShard's capacity order (every
    first choice of the sequence before any second choice)."""
    B, T, _ = x.shape
    out = torch.zeros_like(x)
    for b in range(B):
        probs = torch.softmax(x[b] @ moe.router.weight.T, dim=-1)  # (T, E)
        top_p, top_i = probs.topk(moe.top_k, dim=-1)
        top_p = top_p / top_p.sum(-1, keepdim=True)
        load = [0] * len(moe.experts)
        for rank in range(moe.top_k):
            for t in range(T):
                e = int(top_i[t, rank])
                load[e] += 1
                if capacity is None or load[e] <= capacity:
                    out[b, t] += top_p[t, rank] * moe.experts[e](x[b, t])
    return out


def test_top2_capacity_against_the_naive_loop():
    moe = build(hidden=H, experts=E, top_k=2, capacity_factor=0.5).train()
    x = torch.randn(2, 12, D)
    capacity = math.ceil(0.5 * 12 * 2 / E)  # 3
    with torch.no_grad():
        torch.testing.assert_close(moe(x), naive_moe(moe, x, capacity), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(moe.eval()(x), naive_moe(moe, x, None), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(moe.train()(x), moe.eval()(x))  # some tokens were dropped


@pytest.mark.parametrize("gated, kind", [(True, "swiglu"), (False, "mlp")])
def test_one_expert_is_its_ffn(gated, kind):
    moe = build(hidden=H, experts=1, top_k=1, gated=gated, act="silu", bias=True).eval()
    ffn = build(kind, hidden=H, bias=True, **({} if gated else {"act": "silu"})).eval()
    ffn.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(moe(x), ffn(x), atol=1e-6, rtol=1e-6)


SPEC = copy_spec("full(heads: heads)", name="moe").replace(
    "ffn = mlp(hidden: 2 * d_model, act: gelu)",
    "ffn = moe(hidden: d_model, experts: 4, top_k: 2, capacity_factor: 1.5, z_weight: 0.001)")


@pytest.fixture(scope="module")
def model():
    return txdsl.build(SPEC, backend="eager", seed=0).module


def test_model_returns_the_losses_and_compiles(model):
    ids = torch.randint(2, 16, (2, 9))
    out = model.train()(input_ids=ids)
    assert set(out.aux_losses) == {"load_balancing", "router_z"}
    assert float(out.aux_losses["load_balancing"].detach()) > 0
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    got = compiled(input_ids=ids)
    torch.testing.assert_close(got.logits, out.logits, atol=1e-5, rtol=1e-5)
    (got.logits.square().mean() + got.aux_loss).backward()
    router = model.decoder.layers[0].ffn.router.weight
    assert router.grad is not None and router.grad.abs().sum() > 0


def test_decoding_equals_the_full_forward(model):
    model.eval()
    ids = torch.randint(2, 16, (1, 8))
    full = model(input_ids=ids).logits
    cache = model.new_cache(batch=1, capacity=8)
    steps = [model(input_ids=ids[:, t:t + 1], past_key_values=cache, use_cache=True).logits
             for t in range(8)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_trains_on_the_copy_task():
    variant = train(txdsl.build(SPEC, backend="eager", seed=0).module, aux_weight=1.0)
    full = full_baseline(copy_spec("full(heads: heads)", name="full"))
    print(f"moe copy task: {variant}, full: {full}")
    assert_trains(variant, full)
