"""Each low-rank / prototype kind against its defining equation written naively, and the
approximations converging to softmax attention (tiny shapes: d_model 32, 4 heads)."""

from __future__ import annotations

import math

import pytest
import torch

import txdsl_attention
from txdsl.plugins import load_registry
from txdsl.sdk import BuildContext, Dims
from txdsl.sdk.attention import AttentionMask, StackState

REGISTRY = load_registry({"attention": txdsl_attention})
D, H, HD, B = 32, 4, 8, 2


def build(kind: str, context: int = 16, residual: str | None = None, **args):
    impl = next(i for i in REGISTRY.implementations("attention", kind) if i.impl == "reference")
    dims = Dims(d_model=D, width=D, embed_size=D, context=context, residual=residual)
    return impl.build(REGISTRY.args("attention", kind)(heads=H, **args),
                      BuildContext(dims=dims)).eval()


def heads(x, lin):
    """``(B, T, d)`` through ``lin``, split into ``(B, H, T, HD)``."""
    return lin(x).view(x.shape[0], x.shape[1], H, -1).transpose(1, 2)


def merge(y, lin):
    return lin(y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1))


def naive_mha(x, keys, q_proj, k_proj, v_proj, out_proj, key_ok=None, scale=None):
    """softmax(Q K^T / sqrt(d)) V (or ``* scale``), one (batch, head, query) at a time."""
    q, k, v = heads(x, q_proj), heads(keys, k_proj), heads(keys, v_proj)
    y = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for h in range(H):
            for t in range(q.shape[2]):
                s = torch.stack([q[b, h, t] @ k[b, h, j] for j in range(k.shape[2])])
                s = s / math.sqrt(q.shape[-1]) if scale is None else s * scale
                if key_ok is not None:
                    s = s.masked_fill(~key_ok[b], float("-inf"))
                y[b, h, t] = torch.softmax(s, 0) @ v[b, h]
    return merge(y, out_proj)


def full_of(m, x, memory=None, key_ok=None):
    return naive_mha(x, x if memory is None else memory, m.q_proj, m.k_proj, m.v_proj,
                     m.out_proj, key_ok)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------ linformer

@torch.no_grad()
def test_linformer_equation_and_identity_projection():
    T = 12
    m = build("linformer", context=T, k=5)
    x = torch.randn(B, T, D)
    q, k, v = heads(x, m.q_proj), heads(x, m.k_proj), heads(x, m.v_proj)
    kp = torch.matmul(m.E.T, k)  # (B, H, k, HD): E^T K
    vp = torch.matmul(m.F.T, v)
    want = merge(torch.softmax(q @ kp.transpose(-1, -2) / math.sqrt(HD), -1) @ vp, m.out_proj)
    torch.testing.assert_close(m(x, mask=AttentionMask()), want, atol=1e-5, rtol=1e-5)
    # k = length, E = F = identity: softmax attention exactly.
    m = build("linformer", context=T, k=T)
    m.E.copy_(torch.eye(T))
    m.F.copy_(torch.eye(T))
    got, ref = m(x, mask=AttentionMask()), full_of(m, x)
    assert (got - ref).abs().max() < 1e-5


# ------------------------------------------------------------------ nystrom

@torch.no_grad()
def test_nystrom_equation_as_the_papers_code():
    T, L = 12, 4  # T divisible by the landmarks: the paper's reshape-mean
    m = build("nystrom", landmarks=L, iterations=6, conv=3)
    x = torch.randn(B, T, D)
    q, k, v = (heads(x, p) for p in (m.q_proj, m.k_proj, m.v_proj))
    q, k = q / HD ** 0.25, k / HD ** 0.25
    ql = q.reshape(B, H, L, T // L, HD).mean(-2)
    kl = k.reshape(B, H, L, T // L, HD).mean(-2)
    k1 = torch.softmax(q @ kl.transpose(-1, -2), -1)
    k2 = torch.softmax(ql @ kl.transpose(-1, -2), -1)
    k3 = torch.softmax(ql @ k.transpose(-1, -2), -1)
    eye = torch.eye(L)
    z = k2.transpose(-1, -2) / k2.sum(-2).max(-1).values[..., None, None]
    for _ in range(6):
        kz = k2 @ z
        z = 0.25 * z @ (13 * eye - kz @ (15 * eye - kz @ (7 * eye - kz)))
    y = k1 @ z @ (k3 @ v) + m.conv(v)
    torch.testing.assert_close(m(x, mask=AttentionMask()), merge(y, m.out_proj),
                               atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_nystrom_with_landmarks_equal_to_length_is_softmax():
    T = 10
    m = build("nystrom", landmarks=T, iterations=30)
    x = torch.randn(B, T, D)
    err = (m(x, mask=AttentionMask()) - full_of(m, x)).abs().max().item()
    assert err < 1e-3, err  # measured ~1e-6; the iteration's convergence bounds it


@torch.no_grad()
def test_nystrom_error_falls_with_landmarks():
    T = 32
    m = build("nystrom", landmarks=2, iterations=20)
    x = torch.randn(B, T, D) * 2
    ref = full_of(m, x)
    errs = []
    for landmarks in (2, 8, 32):
        m.landmarks = landmarks
        errs.append((m(x, mask=AttentionMask()) - ref).abs().mean().item())
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-4, errs


# ------------------------------------------------------------------ lowrank

@torch.no_grad()
def test_lowrank_is_full_attention_with_the_product_weights():
    m = build("lowrank", rank=6, head_dim=4)  # head 4 < d_model / heads = 8
    x, pad = torch.randn(B, 9, D), torch.ones(B, 9, dtype=torch.bool)
    pad[0, -2:] = False
    for p in (m.q_proj, m.k_proj, m.v_proj, m.out_proj):
        a, b = p[0].weight, p[1].weight
        assert a.shape[0] == 6 and torch.linalg.matrix_rank(b @ a) <= 6
    got = m(x, mask=AttentionMask(key_padding=pad))
    assert (got - full_of(m, x, key_ok=pad)).abs().max() < 1e-5


# ------------------------------------------------------------------ probsparse

@torch.no_grad()
def test_probsparse_equation():
    T, factor = 24, 2
    m = build("probsparse", factor=factor)
    x = torch.randn(B, T, D)
    q, k, v = (heads(x, p) for p in (m.q_proj, m.k_proj, m.v_proj))
    u = n = factor * math.ceil(math.log(T))  # 8 active queries, 8 sampled keys
    picked = [i * T // n for i in range(n)]
    y = torch.empty_like(q)
    for b in range(B):
        for h in range(H):
            s = q[b, h] @ k[b, h, picked].T / math.sqrt(HD)  # (T, n)
            measure = s.max(-1).values - s.mean(-1)
            top = set(measure.topk(u).indices.tolist())
            for t in range(T):
                if t in top:
                    y[b, h, t] = torch.softmax(q[b, h, t] @ k[b, h].T / math.sqrt(HD), 0) @ v[b, h]
                else:
                    y[b, h, t] = v[b, h].mean(0)
    torch.testing.assert_close(m(x, mask=AttentionMask()), merge(y, m.out_proj),
                               atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_causal_probsparse_equation():
    """Causal: the measurement over every key <= t (no sample); t is active if fewer than u
    earlier queries measure at least as much; lazy queries get the mean of v_0..v_t."""
    T, factor = 24, 1
    m = build("probsparse", factor=factor)
    x = torch.randn(B, T, D) * 2
    q, k, v = (heads(x, p) for p in (m.q_proj, m.k_proj, m.v_proj))
    u = factor * math.ceil(math.log(T))  # 4 of 24: most queries are lazy
    y = torch.empty_like(q)
    for b in range(B):
        for h in range(H):
            measure = []
            for t in range(T):
                s = torch.stack([q[b, h, t] @ k[b, h, j] for j in range(t + 1)]) / math.sqrt(HD)
                measure.append(s.max() - s.mean())
            for t in range(T):
                if sum(measure[r] >= measure[t] for r in range(t)) < u:
                    y[b, h, t] = torch.softmax(k[b, h, :t + 1] @ q[b, h, t] / math.sqrt(HD),
                                               0) @ v[b, h, :t + 1]
                else:
                    y[b, h, t] = v[b, h, :t + 1].mean(0)
    got = m(x, mask=AttentionMask(causal=True))
    assert (got - merge(y, m.out_proj)).abs().max() < 1e-5
    every = build("probsparse", factor=10)  # u >= T: every query active, causal softmax
    i, j = torch.arange(T)[:, None], torch.arange(T)[None]
    qe, ke, ve = (heads(x, p) for p in (every.q_proj, every.k_proj, every.v_proj))
    s = (qe @ ke.transpose(-1, -2) / math.sqrt(HD)).masked_fill(j > i, float("-inf"))
    want = merge(torch.softmax(s, -1) @ ve, every.out_proj)
    assert (every(x, mask=AttentionMask(causal=True)) - want).abs().max() < 1e-5


@torch.no_grad()
def test_probsparse_with_every_query_active_is_softmax():
    T = 10
    m = build("probsparse", factor=10)  # u = 10 * ceil(ln 10) >= T
    x, pad = torch.randn(B, T, D), torch.ones(B, T, dtype=torch.bool)
    pad[1, :3] = False
    got = m(x, mask=AttentionMask(key_padding=pad))
    assert (got - full_of(m, x, key_ok=pad)).abs().max() < 1e-5


@torch.no_grad()
def test_probsparse_never_measures_the_unsampled_keys():
    """The fixed, evenly spaced sample (not Informer's random one) is the same for every
    query: at T = 8, factor 2 it is keys 0, 1, 2, 4, 5, 6, so a query peaked on key 3 or 7
    measures M = 0 and is lazy. On the reverse task exactly those queries (4 and 0) get
    mean(V): the floor in test_models.py (measured over every key instead: 0.030)."""
    m, T = build("probsparse", factor=2), 8  # u = 6 active queries, 6 sampled keys
    k = torch.eye(T)[None, None].expand(1, H, T, T)  # (1, H, T, hd = 8): key j = e_j
    q = 10 * k.flip(2)  # query i peaked on key 7 - i, as the reverse task's
    v = torch.randn(1, H, T, T)
    got = m.attend(q, k, v, mask=AttentionMask(), position=None, state=None)  # (1, H, T, hd)
    exact = torch.softmax(q @ k.transpose(-1, -2) * m.scale, dim=-1) @ v
    lazy = [0, 4]
    torch.testing.assert_close(got[:, :, lazy], v.mean(2, keepdim=True).expand(1, H, 2, T))
    active = [i for i in range(T) if i not in lazy]
    torch.testing.assert_close(got[:, :, active], exact[:, :, active])

# ------------------------------------------------------------------ clustered

@torch.no_grad()
def test_clustered_one_cluster_per_query_is_softmax():
    T = 9
    m = build("clustered", clusters=T, iterations=3)
    x = torch.randn(B, T, D)
    assert (m(x, mask=AttentionMask()) - full_of(m, x)).abs().max() < 1e-5


@torch.no_grad()
def test_clustered_one_cluster_is_the_mean_query():
    T = 9
    m = build("clustered", clusters=1)
    x = torch.randn(B, T, D)
    q, k, v = (heads(x, p) for p in (m.q_proj, m.k_proj, m.v_proj))
    c = q.mean(2, keepdim=True)  # (B, H, 1, HD): the one centroid
    y = (torch.softmax(c @ k.transpose(-1, -2) / math.sqrt(HD), -1) @ v).expand_as(q)
    torch.testing.assert_close(m(x, mask=AttentionMask()), merge(y, m.out_proj),
                               atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_clustered_groups_separated_queries():
    """Two far-apart query groups: k-means with 2 clusters splits them exactly."""
    from txdsl_attention.lowrank.clustered import kmeans

    pts = torch.cat([torch.randn(5, 3) * 0.1 + 10, torch.randn(4, 3) * 0.1 - 10])[None, None]
    assign = kmeans(pts, 2, 5, None)[0, 0]
    assert len(set(assign[:5].tolist())) == 1 and len(set(assign[5:].tolist())) == 1
    assert assign[0] != assign[5]


@torch.no_grad()
def test_improved_clustered_with_every_key_is_softmax():
    """i-clustered with ``topk`` >= S: every query scores every key exactly, whatever the
    clusters (padded keys masked)."""
    T = 9
    m = build("clustered", clusters=2, iterations=3, topk=T)
    x, pad = torch.randn(B, T, D), torch.ones(B, T, dtype=torch.bool)
    pad[0, -3:] = False
    got = m(x, mask=AttentionMask(key_padding=pad))
    assert (got - full_of(m, x, key_ok=pad)).abs().max() < 1e-5


@torch.no_grad()
def test_improved_clustered_equation():
    """Vyas et al. 2020, section 3.3, one query at a time: the centroid's top-k keys T_j
    re-scored by the query, sharing the centroid's mass on them; the rest A^c."""
    from txdsl_attention.lowrank.clustered import kmeans

    T, C, K = 9, 3, 3
    m = build("clustered", clusters=C, iterations=3, topk=K)
    x = torch.randn(B, T, D)
    q, k, v = (heads(x, p) for p in (m.q_proj, m.k_proj, m.v_proj))
    assign = kmeans(q, C, 3, None)
    y = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                j = assign[b, h, t]
                members = q[b, h][assign[b, h] == j]
                a_c = torch.softmax(members.mean(0) @ k[b, h].T / math.sqrt(HD), 0)  # (T,)
                top = set(a_c.topk(K).indices.tolist())
                mass = sum(a_c[i] for i in top)
                exact = {i: torch.exp(q[b, h, t] @ k[b, h, i] / math.sqrt(HD)) for i in top}
                norm = sum(exact.values())
                a_t = [mass * exact[i] / norm if i in top else a_c[i] for i in range(T)]
                y[b, h, t] = sum(a * v[b, h, i] for i, a in enumerate(a_t))
    got = m(x, mask=AttentionMask())
    assert (got - merge(y, m.out_proj)).abs().max() < 1e-5
    plain = build("clustered", clusters=C, iterations=3)
    plain.load_state_dict(m.state_dict())
    assert (plain(x, mask=AttentionMask()) - got).abs().max() > 1e-3  # it re-scores


# ------------------------------------------------------------------ compressed

@torch.no_grad()
def test_compressed_equation():
    T, s = 7, 3  # 7 keys -> 3 slots (the last one zero-padded)
    m = build("compressed", stride=s)
    x = torch.randn(B, T, D)
    q, k, v = (heads(x, p) for p in (m.q_proj, m.k_proj, m.v_proj))

    def slots(z, conv):  # slot j = W . [z_{js} .. z_{js+s-1}] + b, each z over all heads
        flat = z.transpose(1, 2).reshape(B, T, H * HD)
        flat = torch.cat([flat, torch.zeros(B, -T % s, H * HD)], 1)
        w = conv.weight  # (C, C, s)
        out = [sum(flat[:, j * s + i] @ w[:, :, i].T for i in range(s)) + conv.bias
               for j in range(flat.shape[1] // s)]
        return torch.stack(out, 1).view(B, -1, H, HD).transpose(1, 2)

    kc, vc = slots(k, m.conv_k), slots(v, m.conv_v)
    y = torch.softmax(q @ kc.transpose(-1, -2) / math.sqrt(HD), -1) @ vc
    torch.testing.assert_close(m(x, mask=AttentionMask()), merge(y, m.out_proj),
                               atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_causal_compressed_equation():
    """Causal (Liu et al.'s decoder): query t in block b = t // s sees the slots of blocks
    j < b and the raw keys b*s .. t of its own block, one softmax, one query at a time."""
    T, s = 11, 3  # blocks 0-2, 3-5, 6-8, 9-10 (the last partial)
    m = build("compressed", stride=s)
    x, pad = torch.randn(B, T, D) * 2, torch.ones(B, T, dtype=torch.bool)
    pad[1, 4] = False  # a padded key inside a block
    q, k, v = (heads(x, p) for p in (m.q_proj, m.k_proj, m.v_proj))
    keep = pad[:, None, :, None].float()
    kc, vc = (m.compress(conv, z * keep) for conv, z in ((m.conv_k, k), (m.conv_v, v)))
    y = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                blk = t // s
                own = [i for i in range(blk * s, t + 1) if pad[b, i]]
                keys = torch.cat([kc[b, h, :blk], k[b, h, own]])
                vals = torch.cat([vc[b, h, :blk], v[b, h, own]])
                y[b, h, t] = torch.softmax(keys @ q[b, h, t] / math.sqrt(HD), 0) @ vals
    got = m(x, mask=AttentionMask(causal=True, key_padding=pad))
    assert (got - merge(y, m.out_proj)).abs().max() < 1e-5
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, mask=AttentionMask(causal=True)),
                               m(x, mask=AttentionMask(causal=True)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk", [3, 4, 7])  # 3 queries a call, 3 (rounded), 6
def test_causal_compressed_in_chunks_equals_one_pass(monkeypatch, chunk):
    """Long inputs go through SDPA a chunk of whole blocks at a time: the same outputs and
    gradients as one call over every query (with padding, a partial last block; padded
    queries 0 and 1 of the first sequence see no key, so their uniform rows are left out)."""
    from txdsl_attention.lowrank import compressed

    m = build("compressed", stride=3)
    x, pad = torch.randn(B, 11, D, requires_grad=True), torch.ones(B, 11, dtype=torch.bool)
    pad[0, :2] = pad[1, 7] = False
    mask = AttentionMask(causal=True, key_padding=pad)

    def run():
        y = m(x, mask=mask)[pad]  # (real, D)
        (gx,) = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), x)
        return y, gx

    one = run()
    monkeypatch.setattr(compressed, "CAUSAL_CHUNK", chunk)
    for got, want in zip(run(), one):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ inducing / luna

@torch.no_grad()
def test_inducing_is_two_nested_attentions():
    """H' = LayerNorm(I + MHA_1(I, X)), H = LayerNorm(H' + relu(W H' + b)) (the paper's
    MAB(I, X) with its code's rFF), out = MHA_2(X, H)."""
    m = build("inducing", m=3)
    x, pad = torch.randn(B, 8, D), torch.ones(B, 8, dtype=torch.bool)
    pad[0, -3:] = False
    with torch.no_grad():  # non-trivial norms, so a wrong affine would show
        for norm in (m.summary_norm, m.summary_norm2):
            norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)

    def layernorm(h, norm):
        mean, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        return (h - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias

    points = m.inducing.expand(B, -1, -1)
    h = layernorm(points + naive_mha(points, x, m.pack_q, m.pack_k, m.pack_v, m.pack_out, pad),
                  m.summary_norm)
    h = layernorm(h + torch.relu(h @ m.summary_ff.weight.T + m.summary_ff.bias), m.summary_norm2)
    want = naive_mha(x, h, m.q_proj, m.k_proj, m.v_proj, m.out_proj)
    got = m(x, mask=AttentionMask(key_padding=pad))
    assert (got - want).abs().max() < 1e-5
    perm = torch.randperm(5)  # a set: permuting the real elements permutes the output
    got2 = m(x[:1, perm], mask=AttentionMask())
    torch.testing.assert_close(got2, m(x[:1, :5], mask=AttentionMask())[:, perm],
                               atol=1e-5, rtol=1e-5)


def naive_pack(m, p, x, key_ok=None, ph=H, scale=None):
    """Luna's pack as its code writes it: softmax(pack_q(P) X^T / sqrt(d/Hp)) X per pack
    head (``ph`` of them; or ``* scale``), keys = values = X unprojected, one (batch, head,
    row) at a time."""
    q = m.pack_q(p).view(p.shape[0], p.shape[1], ph, -1).transpose(1, 2)
    kv = x.view(x.shape[0], x.shape[1], ph, -1).transpose(1, 2)
    y = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for h in range(ph):
            for j in range(q.shape[2]):
                s = torch.stack([q[b, h, j] @ kv[b, h, i] for i in range(kv.shape[2])])
                s = s / math.sqrt(D // ph) if scale is None else s * scale
                if key_ok is not None:
                    s = s.masked_fill(~key_ok[b], float("-inf"))
                y[b, h, j] = torch.softmax(s, 0) @ kv[b, h]
    return merge(y, torch.nn.Identity())


@pytest.mark.parametrize("residual", ["pre", "post"])
@torch.no_grad()
def test_luna_carries_the_packed_context_between_layers(residual):
    """Pre-norm: the pack's queries from LayerNorm(P), P + Y_P handed on; post-norm (the
    paper's equations): queries from P, LayerNorm(P + Y_P) handed on."""
    first, second = (build("luna", p=3, residual=residual) for _ in range(2))
    assert first.pre_norm == (residual == "pre")
    for m in (first, second):  # non-trivial norms, so a wrong affine would show
        m.norm.weight.uniform_(0.5, 1.5), m.norm.bias.uniform_(-0.5, 0.5)
    x, pad = torch.randn(B, 8, D), torch.ones(B, 8, dtype=torch.bool)
    pad[0, -3:] = False
    mask = AttentionMask(key_padding=pad)
    state = StackState()
    first(x, mask=mask, state=state)
    p1 = first.packed.expand(B, -1, -1)
    if residual == "pre":
        p2 = p1 + naive_pack(first, first.norm(p1), x, pad)
    else:
        p2 = first.norm(p1 + naive_pack(first, p1, x, pad))
    torch.testing.assert_close(state.shared["luna"], p2, atol=1e-5, rtol=1e-5)
    got = second(x, mask=mask, state=state)  # reads p2, not its own P
    packed2 = naive_pack(second, second.norm(p2) if residual == "pre" else p2, x, pad)
    want = naive_mha(x, packed2, second.q_proj, second.k_proj, second.v_proj, second.out_proj)
    assert (got - want).abs().max() < 1e-5
    alone = second(x, mask=mask)
    assert (alone - got).abs().max() > 1e-3  # its own P gives something else


@pytest.mark.parametrize("ph, scale", [(1, None), (2, None), (2, 0.3)])
@torch.no_grad()
def test_luna_packs_with_its_own_heads(ph, scale):
    """``pheads`` (the code's projected attention heads) splits the pack, not the unpack;
    a ``scale`` given scales both softmaxes."""
    m = build("luna", p=3, pheads=ph, scale=scale)
    x, pad = torch.randn(B, 8, D), torch.ones(B, 8, dtype=torch.bool)
    pad[1, :2] = False
    state = StackState()
    got = m(x, mask=AttentionMask(key_padding=pad), state=state)
    p = m.packed.expand(B, -1, -1)
    packed = naive_pack(m, m.norm(p), x, pad, ph=ph, scale=scale)
    torch.testing.assert_close(state.shared["luna"], p + packed, atol=1e-5, rtol=1e-5)
    want = naive_mha(x, packed, m.q_proj, m.k_proj, m.v_proj, m.out_proj, scale=scale)
    assert (got - want).abs().max() < 1e-5


def test_luna_follows_the_layers_residual():
    spec = """
model m {{
  vocab = 16; d_model = 32; heads = 4; layers = 2
  embedding {{ tokens = vocab }}
  encoder(layers) {{ residual = {residual}; norm = layernorm
    attention = luna(heads: heads, p: 3); ffn = mlp(hidden: 64) }}
  heads {{ lm = lm(tied: true) }}
}}
"""
    import txdsl

    for residual, pre in (("pre", True), ("post", False), ("sandwich", True),
                          ("deepnorm", False)):
        model = txdsl.build(spec.format(residual=residual), backend="eager").module
        lunas = [m for m in model.modules() if type(m).__name__ == "LunaAttention"]
        assert len(lunas) == 2 and all(m.pre_norm == pre for m in lunas), residual


@torch.no_grad()
def test_causal_luna_equation():
    """Causal Luna (Ma et al. 2021, sec. 3.4): per-token packing weights
    A_ij = elu(x_i . p_j / sqrt(d/H)) + 1 (x_i: the token's own channels of the head, as
    the official code's), then running means over i <= t, one query
    at a time; padded keys leave the sums and the count; nothing is handed on."""
    m = build("luna", p=3)
    T = 9
    x, pad = torch.randn(B, T, D) * 2, torch.ones(B, T, dtype=torch.bool)
    pad[1, 2] = False
    P = m.packed.expand(B, -1, -1)
    pq, c = heads(P, m.pack_q) / math.sqrt(D // H), heads(x, torch.nn.Identity())
    q, k, v = heads(x, m.q_proj) / math.sqrt(HD), heads(x, m.k_proj), heads(x, m.v_proj)
    y = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                past = [i for i in range(t + 1) if pad[b, i]]
                A = torch.nn.functional.elu(c[b, h, past] @ pq[b, h].T) + 1
                s = sum((q[b, h, t] @ k[b, h, i]) * A[n] for n, i in enumerate(past)) / len(past)
                w = torch.softmax(s, 0)  # (l,)
                y[b, h, t] = sum((w @ A[n]) * v[b, h, i] for n, i in enumerate(past)) / len(past)
    state = StackState()
    got = m(x, mask=AttentionMask(causal=True, key_padding=pad), state=state)
    assert (got - merge(y, m.out_proj)).abs().max() < 1e-4
    assert "luna" not in state.shared
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, mask=AttentionMask(causal=True)),
                               m(x, mask=AttentionMask(causal=True)), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ edges

KINDS = {"linformer": {"k": 4}, "nystrom": {"landmarks": 4}, "lowrank": {"rank": 4},
         "probsparse": {"factor": 2}, "clustered": {"clusters": 3}, "compressed": {"stride": 2},
         "inducing": {"m": 3}, "luna": {"p": 3}, "clustered:topk": {"clusters": 3, "topk": 4}}


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_length_one_and_bf16(kind):
    m = build(kind.split(":")[0], **KINDS[kind])
    x = torch.randn(B, 11, D)
    assert m(x[:, :1], mask=AttentionMask()).shape == (B, 1, D)
    ref = m(x, mask=AttentionMask())
    low = m.to(torch.bfloat16)(x.bfloat16(), mask=AttentionMask())
    assert low.dtype == torch.bfloat16
    err = (low.float() - ref).abs().max().item()
    assert err < 0.1 * ref.abs().max().item(), err


@pytest.mark.parametrize("kind", KINDS)
def test_no_graph_break(kind):
    torch._dynamo.reset()  # every kind's forward is the base class's code object: one each
    m = build(kind.split(":")[0], **KINDS[kind])
    x, pad = torch.randn(B, 11, D), torch.ones(B, 11, dtype=torch.bool)
    pad[0, -2:] = False
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    mask = AttentionMask(key_padding=pad)
    torch.testing.assert_close(compiled(x, mask=mask), m(x, mask=mask), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_inductor_forward_backward():
    """One real inductor compile for the family (Linformer: the smallest graph)."""
    torch._dynamo.reset()  # past this file's other compiles of the same forward
    m = build("linformer", context=12, k=4).train()
    x = torch.randn(B, 12, D, requires_grad=True)
    compiled = torch.compile(m, backend="inductor", fullgraph=True)
    y = compiled(x, mask=AttentionMask())
    torch.testing.assert_close(y, m(x, mask=AttentionMask()), atol=1e-4, rtol=1e-4)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
