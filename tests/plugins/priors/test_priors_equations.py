"""Each prior / multi-head kind against its defining equation, written per head in the test,
and the degenerate equivalences (a kind that reduces to full attention does so exactly)."""

from __future__ import annotations

import math

import pytest
import torch

from priors_naive import CAUSAL, H, MIN, B, T, D, build, causal_softmax, finish, full_like, heads
from txdsl.sdk import ArgError
from txdsl.sdk.attention import StackState
from txdsl.sdk.mask import AttentionMask



@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield

X = torch.randn(B, T, D, generator=torch.Generator().manual_seed(5)) * 2
TOL = dict(atol=1e-5, rtol=1e-5)


def close(a, b):
    torch.testing.assert_close(a, b, **TOL)


# ----------------------------------------------------------------- talking heads


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_talking_heads_equation(kv_heads):
    m = build("talking_heads", kv_heads=kv_heads)
    torch.manual_seed(1)
    m.logits_mix.copy_(torch.randn(H, H))
    m.weights_mix.copy_(torch.randn(H, H))
    q, k, v = heads(m, X)
    J = [q[h] @ k[h].transpose(1, 2) * m.scale for h in range(H)]  # (B, T, T) each
    L = [sum(J[h] * m.logits_mix[h, g] for h in range(H)) for g in range(H)]
    A = [causal_softmax(L[g]) for g in range(H)]
    W = [sum(A[h] * m.weights_mix[h, g] for h in range(H)) for g in range(H)]
    close(m(X, mask=CAUSAL), finish(m, [W[g] @ v[g] for g in range(H)]))


def test_talking_heads_with_identity_mixing_is_full():
    m = build("talking_heads", kv_heads=2)
    assert torch.equal(m.logits_mix, torch.eye(H)) and torch.equal(m.weights_mix, torch.eye(H))
    ref = full_like(m, kv_heads=2)
    for mask in (CAUSAL, AttentionMask()):
        close(m(X, mask=mask), ref(X, mask=mask))


# ----------------------------------------------------------------- collaborative


def test_collaborative_equation_with_a_narrow_shared_dim():
    m = build("collaborative", shared_dim=12)
    torch.manual_seed(2)
    m.mixing.copy_(torch.randn(H, 12))
    Q, K = m.q_proj(X), m.k_proj(X)  # (B, T, 12): shared by the heads
    v = m.v_proj(X)
    outs = []
    for h in range(H):
        s = (Q * m.mixing[h]) @ K.transpose(1, 2) / math.sqrt(m.head_dim)
        outs.append(causal_softmax(s) @ v[..., h * m.head_dim:(h + 1) * m.head_dim])
    close(m(X, mask=CAUSAL), finish(m, outs))


def test_collaborative_with_one_hot_mixing_is_full():
    m = build("collaborative")
    ref = full_like(m)
    for mask in (CAUSAL, AttentionMask()):
        close(m(X, mask=mask), ref(X, mask=mask))


def test_collaborative_refuses_kv_heads_and_odd_shared_dim():
    from priors_naive import DIMS, REGISTRY
    cls = REGISTRY.args("attention", "collaborative")
    with pytest.raises(ArgError, match=r"kv_heads \(2\) must equal heads \(4\)") as err:
        cls(heads=4, kv_heads=2).check(DIMS)
    assert err.value.arg == "kv_heads"
    with pytest.raises(ArgError, match=r"shared_dim \(10\) is not divisible by heads") as err:
        cls(heads=4, shared_dim=10).check(DIMS)
    assert err.value.arg == "shared_dim"


# ----------------------------------------------------------------- adaptive span


def test_adaptive_span_equation_and_its_loss():
    m = build("adaptive_span", check=False, max_span=6, ramp=2, kv_heads=2)
    m.span_ratio.copy_(torch.tensor([0.0, 0.2, 0.5, 0.9]).view(H, 1, 1))
    q, k, v = heads(m, X)
    outs = []
    for h in range(H):
        z = 6 * float(m.span_ratio[h])
        s = q[h] @ k[h].transpose(1, 2) * m.scale
        s = s - s.amax(-1, keepdim=True)  # exp stays finite; the ratio is unchanged
        a = torch.zeros_like(s)
        for i in range(T):
            for j in range(i + 1):  # causal
                a[:, i, j] = min(max((2 + z - (i - j)) / 2, 0.0), 1.0) * torch.exp(s[:, i, j])
        outs.append((a / a.sum(-1, keepdim=True)) @ v[h])
    state = StackState()
    close(m(X, mask=CAUSAL, state=state), finish(m, outs))
    close(state.aux_losses["adaptive_span"], torch.tensor((0.0 + 0.2 + 0.5 + 0.9) / 4))


def test_adaptive_span_at_full_span_is_full():
    m = build("adaptive_span", max_span=T, ramp=3, init=1.0)
    ref = full_like(m)
    for mask in (CAUSAL, AttentionMask()):
        close(m(X, mask=mask), ref(X, mask=mask))


# ------------------------------------------------------------------ multi-scale


@pytest.mark.parametrize("causal", [True, False])
def test_multi_scale_equation(causal):
    m = build("multi_scale", spans="0|1|3|100", kv_heads=1)
    spans = (0, 1, 3, 100)
    q, k, v = heads(m, X)
    outs = []
    for h in range(H):
        s = q[h] @ k[h].transpose(1, 2) * m.scale
        for i in range(T):
            for j in range(T):
                if abs(i - j) > spans[h] or (causal and j > i):
                    s[:, i, j] = MIN
        outs.append(torch.softmax(s, -1) @ v[h])
    close(m(X, mask=AttentionMask(causal=causal)), finish(m, outs))


def test_multi_scale_spans_must_match_heads():
    from priors_naive import DIMS, REGISTRY
    with pytest.raises(ArgError, match=r"spans '1\|2' gives 2 spans for 4 heads"):
        REGISTRY.args("attention", "multi_scale")(heads=4, spans="1|2").check(DIMS)


# ----------------------------------------------------------------- head routing


def test_head_routing_equation():
    m = build("head_routing", capsules=3, capsule_dim=5, iterations=3, kv_heads=2)
    q, k, v = heads(m, X)
    u = [causal_softmax(q[h] @ k[h].transpose(1, 2) * m.scale) @ v[h] for h in range(H)]
    W = m.out_proj.votes  # (H, N, hd, cd)
    votes = [[u[h] @ W[h, n] for n in range(3)] for h in range(H)]  # (B, T, cd)
    b = [[torch.zeros(B, T, 1) for _ in range(3)] for _ in range(H)]

    def squash(s):
        n = (s ** 2).sum(-1, keepdim=True)
        return n / (1 + n) * s / n.sqrt()

    for _ in range(3):
        c = [torch.softmax(torch.cat(b[h], -1), -1) for h in range(H)]  # over outputs
        o = [squash(sum(c[h][..., n:n + 1] * votes[h][n] for h in range(H))) for n in range(3)]
        b = [[b[h][n] + (o[n] * votes[h][n]).sum(-1, keepdim=True) for n in range(3)]
             for h in range(H)]
    close(m(X, mask=CAUSAL), m.out_proj.out(torch.cat(o, -1)))


# --------------------------------------------------------------------- locality


@pytest.mark.parametrize("causal", [True, False])
def test_locality_equation(causal):
    m = build("locality", width=2.0, weight=1.5, kv_heads=2)
    m.log_sigma.copy_(torch.log(torch.tensor([0.5, 1.0, 2.0, 4.0])).view(H, 1, 1))
    q, k, v = heads(m, X)
    outs = []
    for h in range(H):
        sigma = [0.5, 1.0, 2.0, 4.0][h]
        s = q[h] @ k[h].transpose(1, 2) * m.scale
        for i in range(T):
            for j in range(T):
                s[:, i, j] -= 1.5 * (i - j) ** 2 / (2 * sigma ** 2)
                if causal and j > i:
                    s[:, i, j] = MIN
        outs.append(torch.softmax(s, -1) @ v[h])
    close(m(X, mask=AttentionMask(causal=causal)), finish(m, outs))


def test_locality_of_zero_weight_is_full():
    m = build("locality", weight=0.0)
    ref = full_like(m)
    for mask in (CAUSAL, AttentionMask()):
        close(m(X, mask=mask), ref(X, mask=mask))


# ------------------------------------------------------------------- realformer


def test_realformer_first_layer_is_full_and_the_next_adds_its_scores():
    first, second = build("realformer", kv_heads=2), build("realformer", seed=1, kv_heads=2)
    state = StackState()
    y1 = first(X, mask=CAUSAL, state=state)
    close(y1, full_like(first, kv_heads=2)(X, mask=CAUSAL))  # nothing before it: full
    q1, k1, _ = heads(first, X)
    prev = [q1[h] @ k1[h].transpose(1, 2) * first.scale for h in range(H)]
    close(state.scores, torch.stack(prev, 1))  # handed on, pre-mask (B, H, T, T)
    q, k, v = heads(second, y1)
    outs = [causal_softmax(q[h] @ k[h].transpose(1, 2) * second.scale + prev[h]) @ v[h]
            for h in range(H)]
    close(second(y1, mask=CAUSAL, state=state), finish(second, outs))


# ------------------------------------------------------------------ synthesizer


def test_synthesizer_dense_equation_and_causal_mask():
    m = build("synthesizer_dense", check=False, max_len=16)
    hd = m.head_dim
    B_ = m.synth(torch.relu(m.hidden(X))).view(B, T, H, 16)  # (B, T, H, max_len)
    v = m.v_proj(X)
    outs = [causal_softmax(B_[:, :, h, :T]) @ v[..., h * hd:(h + 1) * hd] for h in range(H)]
    y = m(X, mask=CAUSAL)
    assert y.shape == (B, T, D)
    close(y, finish(m, outs))
    Y = X.clone()
    Y[:, 4:] = torch.randn(B, T - 4, D)
    close(m(Y, mask=CAUSAL)[:, :4], y[:, :4])  # the past never sees the future
    assert not torch.allclose(m(X, mask=AttentionMask())[:, :4], y[:, :4])


@pytest.mark.parametrize("trainable", [True, False])
def test_synthesizer_random_equation_and_shapes(trainable):
    m = build("synthesizer_random", check=False, max_len=9, trainable=trainable)
    assert m.table.shape == (H, 9, 9) and m.table.requires_grad == trainable
    hd, v = m.head_dim, m.v_proj(X)
    outs = [causal_softmax(m.table[h, :T, :T].expand(B, T, T)) @ v[..., h * hd:(h + 1) * hd]
            for h in range(H)]
    close(m(X, mask=CAUSAL), finish(m, outs))
    assert m(X[:, :1], mask=CAUSAL).shape == (B, 1, D)
    with pytest.raises(ValueError, match="10 keys, but max_len is 9"):
        m(torch.randn(1, 10, D), mask=CAUSAL)


def test_synthesizer_max_len_against_the_context_and_no_gqa():
    from priors_naive import DIMS, REGISTRY
    cls = REGISTRY.args("attention", "synthesizer_dense")
    with pytest.raises(ArgError, match=r"max_len \(32\) is shorter than the context \(64\)") as e:
        cls(heads=4, max_len=32).check(DIMS)
    assert e.value.arg == "max_len"
    with pytest.raises(ArgError, match="no queries or keys") as e:
        cls(heads=4, kv_heads=2, max_len=64).check(DIMS)
    assert e.value.arg == "kv_heads"


# ----------------------------------------------------------------- task adapter


def test_task_adapter_equation():
    m = build("task_adapter", check=False, tasks=3, max_len=12, blocks=3, kv_heads=2)
    task_ids = torch.tensor([2, 0])
    q, k, v = heads(m, X)
    M = torch.zeros(B, 12, 12)  # block-diagonal: 3 blocks of 4
    for b in range(B):
        z = m.task_embedding.weight[task_ids[b]]
        for n in range(3):
            gamma = z @ m.gamma.weight[n] + m.gamma.bias[n]
            beta = z @ m.beta.weight[n] + m.beta.bias[n]
            M[b, 4 * n:4 * n + 4, 4 * n:4 * n + 4] = m.A[n] * gamma + beta
    outs = [causal_softmax(q[h] @ k[h].transpose(1, 2) * m.scale + M[:, :T, :T]) @ v[h]
            for h in range(H)]
    state = StackState(inputs={"task_ids": task_ids})
    y = m(X, mask=CAUSAL, state=state)
    close(y, finish(m, outs))
    other = m(X, mask=CAUSAL, state=StackState(inputs={"task_ids": torch.tensor([1, 0])}))
    assert not torch.allclose(other[0], y[0]) and torch.allclose(other[1], y[1], **TOL)
    close(m(X, mask=CAUSAL), m(X, mask=CAUSAL, state=StackState(
        inputs={"task_ids": torch.zeros(B, dtype=torch.long)})))  # no task_ids: task 0


# ------------------------------------------------------------------- bfloat16

KINDS = ["talking_heads", "collaborative", "adaptive_span", "multi_scale", "head_routing",
         "locality", "realformer", "synthesizer_dense", "synthesizer_random", "task_adapter"]


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_follows_float32(kind):
    """Scores and softmax run in float32 for half inputs: bf16 stays near the fp32 output."""
    m = build(kind).to(torch.bfloat16)
    x = X.to(torch.bfloat16)
    # the float32 reference runs on the same (bf16-rounded) weights and input, so only the
    # precision of the computation differs
    got = m(x, mask=CAUSAL)
    want = m.float()(x.float(), mask=CAUSAL)
    assert got.dtype == torch.bfloat16
    err = ((got.float() - want).abs().max() / want.abs().max()).item()
    assert err < 0.05, f"{kind}: bf16 relative error {err}"
