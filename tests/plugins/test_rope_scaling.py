"""RoPE scaling (linear, dynamic NTK, yarn, llama3) against Hugging Face's LlamaRotaryEmbedding built
from the same rope_parameters (``modeling_rope_utils.ROPE_INIT_FUNCTIONS``): inverse
frequencies, attention scaling, cos/sin; dynamic through a growing sequence; a spec using
yarn builds, decodes like its full forward and compiles fullgraph."""

from __future__ import annotations

import pytest
import torch

import txdsl
import txdsl_positions
from txdsl.plugins import load_registry
from txdsl.sdk import ArgError, BuildContext, Dims

REGISTRY = load_registry({"positions": txdsl_positions})
HEADS, HEAD_DIM, ORIGINAL = 4, 16, 32
DIMS = Dims(d_model=64, width=64, embed_size=64, heads=HEADS, head_dim=HEAD_DIM, context=128)


def ours(**args):
    impl = REGISTRY.implementations("position", "rope")[0]
    return impl.build(impl.args(**args), BuildContext(dims=DIMS))


def hf(rope_type: str, factor: float, fraction: float = 1.0, **extra):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    params = {"rope_type": rope_type, "rope_theta": 500.0, "factor": factor, **extra}
    if rope_type in ("yarn", "llama3"):  # dynamic reads max_position_embeddings
        params["original_max_position_embeddings"] = ORIGINAL
    if fraction != 1.0:
        params["partial_rotary_factor"] = fraction
    config = LlamaConfig(hidden_size=HEADS * HEAD_DIM, num_attention_heads=HEADS,
                         head_dim=HEAD_DIM, max_position_embeddings=ORIGINAL,
                         rope_parameters=params)
    return LlamaRotaryEmbedding(config)


CASES = [
    ("linear", 4.0, 1.0, {}, {}),
    ("dynamic", 3.0, 1.0, {}, {}),
    ("yarn", 4.0, 1.0, {}, {}),
    ("yarn", 8.0, 0.5, {"beta_fast": 16.0, "beta_slow": 2.0},
     {"beta_fast": 16.0, "beta_slow": 2.0}),
    ("yarn", 2.0, 1.0, {"attention_factor": 1.3, "truncate": False},
     {"attention_factor": 1.3, "truncate": False}),
    # Llama 3.1's own factors; at head_dim 16 and theta 500 some wavelengths fall in each
    # of the three bands (kept, blended, divided), checked below
    ("llama3", 8.0, 1.0, {}, {"low_freq_factor": 1.0, "high_freq_factor": 4.0}),
    ("llama3", 4.0, 0.5, {"low_freq_factor": 2.0, "high_freq_factor": 8.0},
     {"low_freq_factor": 2.0, "high_freq_factor": 8.0}),
]


@pytest.mark.parametrize("scaling, factor, fraction, args, extra", CASES,
                         ids=[f"{c[0]}-{c[1]:g}-{c[2]:g}" for c in CASES])
def test_cos_sin_match_hf(scaling, factor, fraction, args, extra):
    rope = ours(theta=500.0, scaling=scaling, factor=factor, fraction=fraction,
                original_context=ORIGINAL, **args)
    ref = hf(scaling, factor, fraction, **extra)
    if scaling != "dynamic":
        torch.testing.assert_close(rope.inv_freq, ref.inv_freq, atol=0, rtol=1e-6)
        assert rope.attention_scale == pytest.approx(ref.attention_scaling)
    # a sequence longer than the original context: dynamic rescales its base
    positions = torch.arange(3 * ORIGINAL)[None]
    cos, sin = rope.cos_sin(positions, torch.float32)
    ref_cos, ref_sin = ref(torch.zeros(1, 1, HEADS * HEAD_DIM), positions)
    torch.testing.assert_close(cos, ref_cos, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sin, ref_sin, atol=1e-5, rtol=1e-5)
    unscaled = ours(theta=500.0, fraction=fraction).cos_sin(positions, torch.float32)[0]
    assert (cos - unscaled).abs().max() > 1e-2  # the scaling really changes something


def test_llama3_covers_its_three_bands():
    rope = ours(theta=500.0, scaling="llama3", factor=8.0, original_context=ORIGINAL)
    plain = ours(theta=500.0).inv_freq
    ratio = plain / rope.inv_freq  # 1: kept, 8: divided, between: blended
    assert (ratio == 1).any() and (ratio == 8).any()
    assert ((ratio > 1.01) & (ratio < 7.99)).any()


def test_dynamic_follows_a_growing_sequence_like_hf():
    rope = ours(theta=500.0, scaling="dynamic", factor=2.0, original_context=ORIGINAL)
    ref = hf("dynamic", 2.0)
    x = torch.zeros(1, 1, HEADS * HEAD_DIM)
    for length in (8, ORIGINAL, ORIGINAL + 1, 50, 100):  # HF grows its cached frequencies
        step = torch.tensor([[length - 1]])  # the newest token, as when decoding
        torch.testing.assert_close(rope.cos_sin(step, torch.float32)[0], ref(x, step)[0],
                                   atol=1e-5, rtol=1e-5)
    short = ours(theta=500.0).cos_sin(torch.arange(ORIGINAL)[None], torch.float32)[0]
    within = rope.cos_sin(torch.arange(ORIGINAL)[None], torch.float32)[0]
    torch.testing.assert_close(within, short)  # within the original context: plain RoPE


def test_checks():
    args = REGISTRY.args("position", "rope")
    no_context = Dims(d_model=64, width=64, embed_size=64, heads=HEADS)
    with pytest.raises(ArgError, match="rope scaling yarn needs the context") as err:
        args(scaling="yarn", factor=2.0).check(no_context)
    assert err.value.arg == "original_context"
    args(scaling="linear", factor=2.0).check(no_context)  # linear needs no context
    with pytest.raises(ArgError, match="rope scaling llama3 needs the context"):
        args(scaling="llama3", factor=8.0).check(no_context)
    with pytest.raises(ArgError, match="needs high_freq_factor .4. above low_freq_factor .4."):
        args(scaling="llama3", factor=8.0, low_freq_factor=4.0).check(DIMS)
    assert args(scaling="yarn", factor=4.0).param_count(DIMS) == 0


SPEC = """
model yarn_tiny {
  vocab = 40; d_model = 32; heads = 4; context = 64
  embedding { tokens = vocab }
  decoder(2) {
    norm = rmsnorm
    position = rope(scaling: yarn, factor: 4.0, original_context: 16)
    attention = full(heads: heads, bias: false)
    ffn = swiglu(hidden: 64, bias: false)
    final_norm = rmsnorm
  }
  head = lm
}
"""


def test_a_yarn_model_decodes_and_compiles():
    model = txdsl.build(SPEC, backend="eager", seed=0).module.eval()
    ids = torch.randint(0, 40, (1, 24))  # past the original context
    full = model(input_ids=ids).logits
    cache = model.new_cache(batch=1, capacity=24)
    steps = [model(input_ids=ids[:, t:t + 1], past_key_values=cache, use_cache=True).logits
             for t in range(24)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    compiled = torch.compile(model.train(), backend="aot_eager", fullgraph=True)
    compiled(input_ids=ids).logits.square().mean().backward()
