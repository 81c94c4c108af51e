"""The mapping engine: one declaration, both directions; placeholders; a plugin's family."""

from __future__ import annotations

import types

import pytest
import torch

from txdsl.hookspecs import hookimpl
from txdsl.interop import Fused, HFFamily, MappingError, Rename
from txdsl.interop.mapping import expand, to_ours, to_theirs
from txdsl.interop.registry import load_families


def test_placeholders_expand_per_layer():
    rules = expand([Rename("decoder.layers.{i}.x", "h.{i}.y", transpose=True)], {"i": 3})
    assert [r.ours for r in rules] == [f"decoder.layers.{i}.x" for i in range(3)]
    assert [r.theirs for r in rules] == [f"h.{i}.y" for i in range(3)] and rules[0].transpose
    with pytest.raises(ValueError, match="no count"):
        expand([Rename("a.{j}", "b.{j}")], {"i": 1})


def test_fused_grouped_query_split_and_concat_are_inverse():
    H, KV, hd, d = 6, 2, 4, 24  # q: H * hd rows, k and v: KV * hd each
    rule = Fused(("q", "k", "v"), "qkv", sizes=(H * hd, KV * hd, KV * hd), transpose=True)
    theirs = {"qkv": torch.randn(d, (H + 2 * KV) * hd)}  # Conv1D-style (in, out)
    ours, missing, unexpected = to_ours([rule], theirs)
    assert not missing and not unexpected
    assert ours["q"].shape == (H * hd, d) and ours["k"].shape == (KV * hd, d)
    assert torch.equal(ours["v"], theirs["qkv"][:, (H + KV) * hd:].t())
    back = to_theirs([rule], ours)
    assert torch.equal(back["qkv"], theirs["qkv"])


def test_unbatch_and_unexpected_and_missing():
    rules = [Rename("pos", "embeddings.position", unbatch=True), Rename("w", "absent")]
    theirs = {"embeddings.position": torch.randn(1, 5, 3), "extra": torch.ones(1),
              "buf.position_ids": torch.ones(1)}
    ours, missing, unexpected = to_ours(rules, theirs, ignore=(r".*position_ids",))
    assert ours["pos"].shape == (5, 3) and missing == ["absent"] and unexpected == ["extra"]
    assert to_theirs(rules[:1], ours)["embeddings.position"].shape == (1, 5, 3)
    with pytest.raises(MappingError, match="lacks the parameters the mapping exports: w"):
        to_theirs(rules, ours)
    with pytest.raises(MappingError, match="can't be split"):
        to_ours([Fused(("a", "b"), "x", sizes=(2, 2))], {"x": torch.ones(5)})


class Toy(HFFamily):
    model_type = "toy"
    zoo = "gpt2.tx"
    architectures = {"ToyForCausalLM": "gpt2"}


def test_a_third_party_plugin_registers_a_family_by_declaration():
    plugin = types.SimpleNamespace(register_hf_mappings=hookimpl(lambda register: register(Toy())))
    from txdsl_hf import register_hf_mappings as builtin

    families = load_families({"toy": plugin, "hf": types.SimpleNamespace(
        register_hf_mappings=builtin)})
    assert isinstance(families["toy"], Toy) and "gpt2" in families


def test_rope_layout_permutation_gives_the_same_scores():
    """A q/k projection stored for interleaved RoPE (pairs 2i, 2i+1: Meta's LLaMA files),
    mapped with rope_heads, gives under txdsl's rotate_half RoPE the scores the interleaved
    rotation gives with the original weights (the definition, written naively here)."""
    from txdsl.sdk.positions import apply_rotary

    H, hd, d, T = 3, 8, 12, 5
    g = torch.Generator().manual_seed(0)
    wq, wk, x = (torch.randn(H * hd, d, generator=g), torch.randn(H * hd, d, generator=g),
                 torch.randn(T, d, generator=g))
    inv = 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd)  # (hd/2,)
    ang = torch.arange(T).float()[:, None] * inv  # (T, hd/2)

    def interleaved(y):  # (T, H, hd), pairs (2i, 2i+1) rotated by ang[:, i]
        a, b = y[..., 0::2], y[..., 1::2]
        c, s = ang.cos()[:, None], ang.sin()[:, None]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)

    q, k = interleaved((x @ wq.t()).view(T, H, hd)), interleaved((x @ wk.t()).view(T, H, hd))
    expected = torch.einsum("thd,shd->hts", q, k)
    rules = [Rename("q", "wq", rope_heads=H), Rename("k", "wk", rope_heads=H)]
    ours, _, _ = to_ours(rules, {"wq": wq, "wk": wk})
    cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()  # (T, hd)
    q2 = apply_rotary((x @ ours["q"].t()).view(T, H, hd).transpose(0, 1), cos, sin)
    k2 = apply_rotary((x @ ours["k"].t()).view(T, H, hd).transpose(0, 1), cos, sin)
    torch.testing.assert_close(torch.einsum("htd,hsd->hts", q2, k2), expected, atol=1e-4,
                               rtol=1e-5)
    back = to_theirs(rules, ours)
    assert torch.equal(back["wq"], wq) and torch.equal(back["wk"], wk)


def test_txdsl_plugins_lists_the_hf_mappings(capsys):
    from txdsl.cli.main import main

    assert main(["plugins"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  hf: "))
    assert "gpt2 (GPT2LMHeadModel)" in line and "t5 (T5ForConditionalGeneration)" in line


LLAMA_LAYOUT = """
model m {{
  vocab = 64; d_model = 32; heads = 4; kv_heads = 2; context = 32
  embedding {{ tokens = vocab }}
  decoder(2) {{
    residual = pre; norm = rmsnorm(eps: 1e-6); position = rope(theta: 10000.0)
    attention = full(heads: heads, kv_heads: kv_heads, bias: false)
    ffn = swiglu(hidden: 64, bias: false)
    final_norm = rmsnorm(eps: 1e-6)
    {layers}
  }}
  head = lm(tied: false)
}}
"""


@pytest.mark.parametrize("layers, arch", [
    ("", "LlamaForCausalLM"),
    ("attention = local(heads: heads, kv_heads: kv_heads, bias: false, window: 6)",
     "MistralForCausalLM"),
    ("layer[1] { attention = local(heads: heads, kv_heads: kv_heads, bias: false, window: 6) }",
     None),  # one window layer among full ones: neither Llama nor Mistral
    ("attention = linear(heads: heads, bias: false)", None),
    ("attention.bias = true; attention.out_bias = false", "Qwen2ForCausalLM"),
    ("attention.bias = true", None),  # a bias on o_proj too: neither Llama's mapping nor Qwen2
    ("layer[1] { position = none }", None),  # HF rotates every layer
    ("layer[1] { ffn = mlp(hidden: 64) }", None),
    ("layer[1] { norm = layernorm }", None),
])
def test_export_picks_the_architecture_from_every_layer(layers, arch):
    import txdsl
    from txdsl.interop.hf import detect

    module = txdsl.build(LLAMA_LAYOUT.format(layers=layers), backend="eager").module
    if arch is None:
        with pytest.raises(MappingError, match="matches no Hugging Face architecture"):
            detect(module)
    else:
        assert detect(module)[1] == arch


def test_a_qwen2_sliding_window_is_refused_by_name():
    import transformers as T

    import txdsl

    config = T.Qwen2Config(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                           max_position_embeddings=32, use_sliding_window=True,
                           sliding_window=8, max_window_layers=1)
    with pytest.raises(MappingError, match="use_sliding_window = True"):
        txdsl.from_hf(T.Qwen2ForCausalLM(config))
