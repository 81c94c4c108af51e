"""The Memory Transformer (Burtsev et al. 2020), its three forms: memory tokens prepended
== the plain stack run on ``[mem; x]`` with the memory stripped, the bottleneck's mask
(a sequence token reaches another only through the memory) against the attention written
with that mask, the dedicated memory-update layer == its two layers run by hand, memory
of size 0 == the plain model, padding, parameter counts, located errors, aot_eager."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import txdsl
from txdsl.errors import SpecError
from txdsl.front.estimate import estimate
from txdsl.plugins import get_registry
from txdsl.runtime.memory_tokens import MemoryTokens
from txdsl.sdk.attention import AttentionMask

N = 3
SPEC = """
model mem_tiny {{
  vocab = 40; d_model = 32; heads = 4
  embedding {{ tokens = vocab; position = learned(max_len: 32) }}
  encoder(2) {{ norm = layernorm; attention = {attention}; ffn = mlp(hidden: 64)
               {memory} }}
  head = lm
}}
"""


def build(memory: str = f"memory_tokens = {N}", attention: str = "full(heads: heads)"):
    text = SPEC.format(memory=memory, attention=attention)
    model = txdsl.build(text, backend="eager", seed=0).module.eval()
    return model, txdsl.parse(text)


@pytest.fixture(scope="module")
def forms():
    return {form: build(f"memory_tokens = {N}; memory_form = {form}")[0]
            for form in ("prepend", "bottleneck", "dedicated")}


def plain_twin(model):
    """The model without memory tokens, with the same weights."""
    plain, _ = build(memory="")
    missing = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing.missing_keys
    return plain


def test_prepended_memory_is_the_plain_stack_on_mem_then_x(forms):
    model = forms["prepend"]
    plain = plain_twin(model)
    ids = torch.randint(0, 40, (2, 7))
    with torch.no_grad():
        x = plain.embedding(ids)
        mem = model.encoder.memory_tokens.memory
        h = torch.cat([mem.expand(2, -1, -1), x], 1)
        pos = torch.arange(N + 7)[None]
        for layer in plain.encoder.layers:
            h = layer(h, mask=AttentionMask(causal=False), position=None)
        want = plain.heads["lm"](h[:, N:])
        out = model(input_ids=ids)
    assert out.logits.shape == (2, 7, 40)  # heads never see the memory
    torch.testing.assert_close(out.logits, want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert (plain(input_ids=ids).logits - out.logits).abs().max() > 1e-4
    assert pos.shape[1] == N + 7


def test_memory_of_size_zero_is_the_plain_model():
    zero, ir = build(memory="memory_tokens = 0")
    assert ir.encoder.memory_tokens == 0 and zero.encoder.memory_tokens is None
    plain, _ = build(memory="")
    ids = torch.randint(0, 40, (2, 7))
    plain.load_state_dict(zero.state_dict())
    # and a memory module of size 0 attached to the stack changes nothing either
    zero.encoder.memory_tokens = MemoryTokens(size=0, d_model=32)
    with torch.no_grad():
        torch.testing.assert_close(zero(input_ids=ids).logits, plain(input_ids=ids).logits,
                                   atol=0, rtol=0)


def test_the_bottleneck_mask_is_the_paper_s(forms):
    model = forms["bottleneck"]
    attn = model.encoder.layers[0].attention
    x = torch.randn(2, N + 6, 32)
    mask = AttentionMask(causal=False).with_pattern("b", model.encoder.memory_tokens.bottleneck())
    B, T, _ = x.shape
    q = attn.q_proj(x).view(B, T, 4, 8).transpose(1, 2)
    k = attn.k_proj(x).view(B, T, 4, 8).transpose(1, 2)
    v = attn.v_proj(x).view(B, T, 4, 8).transpose(1, 2)
    i = torch.arange(T)
    allowed = (i[:, None] < N) | (i[None, :] < N)  # memory sees all; sequence sees memory
    scores = (q @ k.transpose(-1, -2) / 8 ** 0.5).masked_fill(~allowed, float("-inf"))
    want = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, mask=mask), want.detach(), atol=1e-5, rtol=1e-5)


def test_through_the_bottleneck_tokens_meet_only_via_memory(forms):
    model = forms["bottleneck"]
    ids = torch.randint(0, 40, (1, 6))
    other = ids.clone()
    other[0, 4] = (ids[0, 4] + 5) % 40
    stack = model.encoder
    with torch.no_grad():
        one = [model(input_ids=t, output_hidden_states=True).hidden_states for t in (ids, other)]
    # after one layer, position 1 hasn't seen token 4 (only the memory, which had not yet)
    torch.testing.assert_close(one[0][1][:, 1], one[1][1][:, 1], atol=0, rtol=0)
    # after two, it has: through the memory the first layer updated
    assert (one[0][2][:, 1] - one[1][2][:, 1]).abs().max() > 1e-6
    assert len(stack.layers) == 2


def test_the_dedicated_layer_updates_the_memory(forms):
    model = forms["dedicated"]
    mt = model.encoder.memory_tokens
    assert mt.memory_layers is not None and mt.memory_layers[0] is not model.encoder.layers[0]
    ids = torch.randint(0, 40, (2, 5))
    with torch.no_grad():
        h = torch.cat([mt.memory.expand(2, -1, -1), model.embedding(ids)], 1)
        mask = AttentionMask(causal=False)
        for layer, twin in zip(model.encoder.layers, mt.memory_layers):
            seq = layer(h, mask=mask)[:, N:]
            mem = twin(h, mask=mask)[:, :N]
            h = torch.cat([mem, seq], 1)
        torch.testing.assert_close(model(input_ids=ids).last_hidden_state, h[:, N:],
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("form", ["prepend", "bottleneck", "dedicated"])
def test_padding_and_counts(form, forms):
    model = forms[form]
    ids = torch.randint(1, 40, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 2, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 6 + [0, 0]])
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = model(input_ids=padded, attention_mask=mask).logits[:, :6]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    ir = txdsl.parse(SPEC.format(memory=f"memory_tokens = {N}; memory_form = {form}",
                                 attention="full(heads: heads)"))
    assert estimate(ir, get_registry()).params == sum(p.numel() for p in model.parameters())


def test_compiles_in_one_graph_and_a_bidirectional_stack_refuses_a_cache(forms):
    model = forms["bottleneck"]
    ids = torch.randint(0, 40, (2, 6))
    compiled = torch.compile(model.train(), backend="aot_eager", fullgraph=True)
    compiled(input_ids=ids).logits.square().mean().backward()
    assert model.encoder.memory_tokens.memory.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.eval()
    with pytest.raises(ValueError, match="decode with a cache only in a causal stack"):
        model.encoder(torch.randn(1, 2, 32), cache=model.encoder.new_cache(1, 4))


@pytest.mark.parametrize("memory,attention,expect", [
    ("memory_tokens = 2; memory_form = bottleneck; causal = true", "full(heads: heads)",
     "needs a bidirectional stack"),
    ("memory_tokens = 2; memory_form = bottleneck", "linear(heads: heads)",
     "attention 'linear' (layer 0) can't take a custom mask"),
    ("memory_tokens = 2; memory_form = sideways", "full(heads: heads)", "memory_form"),
    ("memory_tokens = -1", "full(heads: heads)", "memory_tokens must be at least 0"),
])
def test_impossible_memory_is_a_located_error(memory, attention, expect):
    with pytest.raises(SpecError) as err:
        txdsl.parse(SPEC.format(memory=memory, attention=attention))
    assert expect in str(err.value) and ":6:" in str(err.value)


def test_the_spec_has_the_three_forms():
    path = Path(__file__).resolve().parents[2] / "specs" / "memory_transformer.tx"
    forms = {m.name: m.encoder.memory_form for m in txdsl.parse_all(path)}
    assert forms == {"memory_transformer": "prepend", "mem_bottleneck": "bottleneck",
                     "mem_ctrl": "dedicated"}
    from txdsl.front.unparse import to_tx
    for ir in txdsl.parse_all(path):
        assert txdsl.parse(to_tx(ir)) == ir
