"""Linearized attention against its defining equations, written naively here.

Each kind's module output (both implementations: ``chunked`` and the
recurrent ``reference``) equals the paper's equation evaluated with an
explicit ``T x S`` similarity matrix; the three causal forms (recurrent,
prefix sums, chunked) agree with each other and with the O(n^2) masked form
at lengths that aren't a multiple of the chunk.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import txdsl_attention
from txdsl.plugins import load_registry
from txdsl.sdk.attention import AttentionMask
from txdsl.sdk.testing import attention_subjects
from txdsl_attention.linear import forms

REGISTRY = load_registry({"attention": txdsl_attention})
SUBJECTS = {str(s): s for s in attention_subjects(REGISTRY, ["linear", "performer", "cosformer"])}
B, T, D, H = 2, 23, 32, 4  # T = 23: not a multiple of the chunk (16)


def heads(m, x):
    """The module's own projections, split: (B, H, T, hd) each."""
    return tuple(m.split(p(x), m.heads) for p in (m.q_proj, m.k_proj, m.v_proj))


def similarity(kind: str, m, q, k):
    """sim(i, j) (B, H, T, S) as each paper defines it, elementwise, no factorisation."""
    if kind == "linear":
        g = m.gain  # phi(gain * x), gain 4 by default
        return torch.einsum("bhtd,bhsd->bhts", F.elu(g * q) + 1, F.elu(g * k) + 1)
    if kind == "performer":  # exp(W x' - |x'|^2 / 2) / sqrt(m), x' = x / d^(1/4)
        d = q.shape[-1]
        W = m.projection

        def phi(x):
            x = x / d ** 0.25
            return torch.exp(x @ W.T - (x ** 2).sum(-1, keepdim=True) / 2) / math.sqrt(W.shape[0])
        return torch.einsum("bhtm,bhsm->bhts", phi(q), phi(k))
    i = torch.arange(q.shape[2])[:, None]
    j = torch.arange(k.shape[2])[None]
    cos = torch.cos(math.pi / 2 * (i - j) / m.horizon)  # cosFormer eq. 9
    return torch.einsum("bhtd,bhsd->bhts", F.relu(q), F.relu(k)) * cos


def naive(kind, m, x, *, causal, padding=None):
    q, k, v = heads(m, x)
    s = similarity(kind, m, q, k)  # (B, H, T, S)
    if causal:
        s = s * torch.ones(T, T).tril()
    if padding is not None:
        s = s * padding[:, None, None, :]
    y = (s @ v) / (s.sum(-1, keepdim=True) + forms.EPS)  # (B, H, T, hd)
    return m.out_proj(y.transpose(1, 2).reshape(B, T, -1))


@pytest.mark.parametrize("impl", ["chunked", "reference"])
@pytest.mark.parametrize("kind", ["linear", "performer", "cosformer"])
@torch.no_grad()
def test_module_equals_the_defining_equation(kind, impl):
    m = SUBJECTS[f"{kind}[{impl}]"].make()
    x = torch.randn(B, T, D) * 2  # large inputs: mistakes show
    pad = torch.ones(B, T, dtype=torch.bool)
    pad[1, :5] = False
    for causal in (True, False):
        for padding in (None, pad):
            got = m(x, mask=AttentionMask(causal=causal, key_padding=padding))
            want = naive(kind, m, x, causal=causal, padding=padding)
            err = (got - want).abs().max().item()
            assert err < 1e-5, (kind, impl, causal, padding is not None, err)


def features(T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    qf, kf = (torch.rand(2, 3, T, 8, generator=g) for _ in range(2))  # positive features
    return qf, kf, torch.randn(2, 3, T, 5, generator=g)


def masked_quadratic(qf, kf, v):
    """The explicit O(n^2) masked form: (phi(Q) phi(K)^T * tril) V / row sums."""
    s = (qf @ kf.transpose(-1, -2)) * torch.ones(qf.shape[2], qf.shape[2]).tril()
    return (s @ v) / (s.sum(-1, keepdim=True) + forms.EPS)


@pytest.mark.parametrize("length", [1, 7, 16, 33, 50])
def test_causal_forms_agree_with_the_masked_quadratic_form(length):
    qf, kf, v = features(length)
    want = masked_quadratic(qf, kf, v)
    rec, S_r, z_r = forms.recurrent(qf, kf, v)
    pre, S_p, z_p = forms.prefix_sum(qf, kf, v)
    for chunk in (4, 16):
        ch, S_c, z_c = forms.chunked(qf, kf, v, chunk=chunk)
        torch.testing.assert_close(ch, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close((S_c, z_c), (S_r, z_r), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rec, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pre, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close((S_p, z_p), (S_r, z_r), atol=1e-5, rtol=1e-5)


def test_forms_continue_from_a_state():
    """Split anywhere, carry (S, z): the same as one pass (what decoding relies on)."""
    qf, kf, v = features(37, seed=3)
    whole = forms.recurrent(qf, kf, v)[0]
    first, S, z = forms.chunked(qf[:, :, :13], kf[:, :, :13], v[:, :, :13], chunk=8)
    rest = forms.chunked(qf[:, :, 13:], kf[:, :, 13:], v[:, :, 13:], (S, z), chunk=8)[0]
    torch.testing.assert_close(torch.cat([first, rest], dim=2), whole, atol=1e-5, rtol=1e-5)


def test_bidirectional_form_is_the_unmasked_quadratic_form():
    qf, kf, v = features(19, seed=1)
    s = qf @ kf.transpose(-1, -2)
    torch.testing.assert_close(forms.bidirectional(qf, kf, v),
                               (s @ v) / (s.sum(-1, keepdim=True) + forms.EPS))


@pytest.mark.parametrize("kind", ["linear", "performer", "cosformer"])
@torch.no_grad()
def test_packed_documents_equal_separate_rows(kind):
    """Two documents packed in one row give each document's own outputs (causal and not);
    cosformer's re-weighting uses slots, so its packed second document sees shifted angles
    and is compared with the naive masked equation instead."""
    m = SUBJECTS[f"{kind}[chunked]"].make()
    x = torch.randn(1, T, D) * 2
    docs = (torch.arange(T) >= 9).long()[None]  # (1, T): tokens 0-8, then 9-22
    for causal in (True, False):
        mask = AttentionMask(causal=causal, q_documents=docs, k_documents=docs)
        got = m(x, mask=mask)
        if kind == "cosformer":
            q, k, v = heads(m, x)
            s = similarity(kind, m, q, k) * (docs[:, None, :, None] == docs[:, None, None, :])
            if causal:
                s = s * torch.ones(T, T).tril()
            y = (s @ v) / (s.sum(-1, keepdim=True) + forms.EPS)
            want = m.out_proj(y.transpose(1, 2).reshape(1, T, -1))
        else:
            want = torch.cat([m(x[:, :9], mask=AttentionMask(causal=causal)),
                              m(x[:, 9:], mask=AttentionMask(causal=causal))], dim=1)
        assert (got - want).abs().max().item() < 1e-5, (kind, causal)


@pytest.mark.parametrize("kind", ["linear", "performer", "cosformer"])
@torch.no_grad()
def test_a_mask_pattern_restricts_the_similarities(kind):
    """A pattern (here a window of 5, as Hugging Face mask functions arrive) is applied to
    the explicit similarity matrix exactly; decoding with one is refused, not ignored."""
    m = SUBJECTS[f"{kind}[chunked]"].make()
    x = torch.randn(B, T, D) * 2
    mask = AttentionMask(causal=True).with_pattern(("window", 5),
                                                   lambda b, h, q, kv: (q - kv).abs() < 5)
    q, k, v = heads(m, x)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None]
    s = similarity(kind, m, q, k) * ((j <= i) & (i - j < 5))
    y = (s @ v) / (s.sum(-1, keepdim=True) + forms.EPS)
    want = m.out_proj(y.transpose(1, 2).reshape(B, T, -1))
    assert (m(x, mask=mask) - want).abs().max().item() < 1e-5
    step = AttentionMask(causal=True, q_slots=torch.tensor([0]), patterns=mask.patterns)
    with pytest.raises(ValueError, match="a mask pattern can't restrict it"):
        m(x[:, :1], mask=step, cache=m.new_state(B, 8))
