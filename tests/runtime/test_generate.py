"""Decoding: the KV cache changes nothing, greedy is argmax, sampling is seeded."""

from __future__ import annotations

import pytest
import torch

from ir_helpers import comp, decoder_only, encoder_decoder, encoder_only, full
from txdsl.back.construct import construct
from txdsl.runtime import next_token

DECODERS = {
    "gpt2": decoder_only(),
    "sandwich_shared": decoder_only(residual="sandwich", n_layers=3,
                                    shares=lambda i: 0 if i == 2 else None),
    "llama": decoder_only(stack_position=comp("position", "rope"), norm=comp("norm", "rmsnorm"),
                          ffn=comp("ffn", "swiglu", hidden=48), attention=full(4, kv_heads=2)),
    "alibi": decoder_only(stack_position=comp("position", "alibi")),
    "t5_bias": decoder_only(stack_position=comp("position", "t5_bias", bidirectional=False)),
    "sinusoidal": decoder_only(position=comp("position", "sinusoidal")),
}


@pytest.fixture(scope="module", params=sorted(DECODERS))
def decoder(request, registry):
    torch.manual_seed(0)
    return construct(DECODERS[request.param], registry=registry, init_std=0.2)


def prompt(B: int = 2, T: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 50, (B, T), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_cached_logits_equal_uncached(decoder):
    x = prompt(T=9)
    expected = decoder(x).logits
    out = decoder(x[:, :4], use_cache=True)
    cache = out.past_key_values
    steps = [out.logits]
    for t in range(4, 9):
        out = decoder(x[:, t:t + 1], past_key_values=cache, use_cache=True)
        assert out.past_key_values is cache and cache.get_seq_length() == t + 1
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_greedy_equals_argmax_loop_without_cache(decoder):
    x = prompt()
    got = decoder.generate(x, 8)
    seq = x
    for _ in range(8):
        nxt = decoder(seq).logits[:, -1].argmax(-1)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    assert torch.equal(got, seq)
    assert torch.equal(decoder.generate(x, 8, use_cache=False), seq)


@torch.no_grad()
def test_left_padded_batch_generates_as_each_row_alone(decoder):
    x = prompt(T=6, seed=1)
    mask = torch.ones_like(x)
    mask[1, :2] = 0
    x = x.masked_fill(mask == 0, 0)
    got = decoder.generate(x, 6, attention_mask=mask)
    assert torch.equal(got, decoder.generate(x, 6, attention_mask=mask, use_cache=False))
    alone = decoder.generate(x[1:, 2:], 6)
    assert torch.equal(got[1, 2:], alone[0])


@torch.no_grad()
def test_sampling_is_reproducible(decoder):
    x = prompt()

    def sample(seed: int, **kw):
        g = torch.Generator().manual_seed(seed)
        return decoder.generate(x, 12, do_sample=True, temperature=2.0, generator=g, **kw)

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))
    greedy = decoder.generate(x, 12)
    assert torch.equal(sample(3, top_k=1), greedy)
    assert torch.equal(sample(4, top_p=1e-6), greedy)


def test_next_token_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    g = torch.Generator().manual_seed(0)
    picks = {int(next_token(logits, do_sample=True, top_k=2, generator=g)) for _ in range(200)}
    assert picks == {2, 3}
    # top_p 0.9: the smallest set whose mass reaches 0.9 is {3, 2, 1} (0.64 + 0.24 + 0.09)
    picks = {int(next_token(logits, do_sample=True, top_p=0.9, generator=g)) for _ in range(400)}
    assert picks == {1, 2, 3}
    with pytest.raises(ValueError, match="temperature"):
        next_token(logits, do_sample=True, temperature=0.0)


@torch.no_grad()
def test_eos_stops_and_pads(registry):
    model = construct(decoder_only(), registry=registry, init_std=0.2)
    x = prompt(B=1)
    greedy = model.generate(x, 6)
    eos = int(greedy[0, 7])  # the third new token (or an earlier one, if it repeats)
    stop = 5 + int((greedy[0, 5:] == eos).nonzero()[0])
    out = model.generate(x, 6, eos_token_id=eos)
    assert torch.equal(out[0], greedy[0, :stop + 1])  # stopped right after eos
    x2 = torch.cat([x, prompt(B=1, seed=9)])
    out = model.generate(x2, 6, eos_token_id=eos, pad_token_id=0)
    row = out[0, 5:].tolist()
    first = row.index(eos)
    assert all(t == 0 for t in row[first + 1:])


@torch.no_grad()
def test_encoder_decoder_generation(registry):
    model = construct(encoder_decoder(), registry=registry, init_std=0.2)
    src = torch.randint(1, 40, (2, 7))
    mask = torch.ones_like(src)
    mask[1, 5:] = 0
    cached = model.generate(src, 6, attention_mask=mask, decoder_start_token_id=0)
    assert cached.shape == (2, 7) and (cached[:, 0] == 0).all()
    assert torch.equal(cached, model.generate(src, 6, attention_mask=mask,
                                              decoder_start_token_id=0, use_cache=False))
    seq = torch.zeros(2, 1, dtype=torch.long)
    for _ in range(6):
        nxt = model(src, attention_mask=mask, decoder_input_ids=seq).logits[:, -1].argmax(-1)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    assert torch.equal(cached, seq)
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        model.generate(src, 2)


def test_encoder_only_cannot_generate(registry):
    model = construct(encoder_only(), registry=registry)
    with pytest.raises(ValueError, match="encoder-only"):
        model.generate(prompt(), 2)
