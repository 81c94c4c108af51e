"""RoPE scaling across the Hugging Face boundary (``plugins/txdsl_hf/rope.py``): a spec
with ``rope(scaling: ...)`` exports the ``rope_parameters`` that make HF's model compute
the same logits, a config with one imports as the same ``rope(...)``, and what HF can't
express in txdsl (or txdsl in HF) is refused by name. Checkpoints with scaling are also
in ``hf_models.CONFIGS`` (llama 2: llama3, llama 3: yarn), so every from_hf test and the
greedy generation test run on them."""

from __future__ import annotations

import pytest
import torch
import transformers as T

import txdsl
from hf_models import scaled
from txdsl.interop import MappingError

SPEC = """
model rope_tiny {{
  vocab = 61; d_model = 32; heads = 4; kv_heads = 2; context = 64
  embedding {{ tokens = vocab }}
  decoder(2) {{
    residual = pre; norm = rmsnorm(eps: 1e-6)
    position = rope(theta: 500.0{scaling})
    attention = full(heads: heads, kv_heads: kv_heads, bias: false)
    ffn = swiglu(hidden: 48, bias: false)
    final_norm = rmsnorm(eps: 1e-6)
  }}
  head = lm(tied: false)
}}
"""

SCALINGS = {
    "default": ("", {"rope_type": "default"}),
    "linear": (", scaling: linear, factor: 4.0", {"rope_type": "linear", "factor": 4.0}),
    "dynamic": (", scaling: dynamic, factor: 2.0", {"rope_type": "dynamic", "factor": 2.0}),
    "yarn": (", scaling: yarn, factor: 4.0, original_context: 16, beta_slow: 2.0",
             {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
              "beta_fast": 32.0, "beta_slow": 2.0, "truncate": True}),
    "llama3": (", scaling: llama3, factor: 8.0, original_context: 16",
               {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 16,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0}),
}


def built(scaling: str):
    model = txdsl.build(SPEC.format(scaling=SCALINGS[scaling][0]), backend="eager",
                        seed=0).module
    return scaled(model)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_export_gives_hf_the_same_model(scaling, tmp_path):
    ours = built(scaling)
    config, _ = txdsl.to_hf(ours, tmp_path)
    params = dict(config.rope_parameters)
    assert params.pop("rope_theta") == 500.0
    assert params == SCALINGS[scaling][1]
    hf = T.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 61, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids).logits, hf(input_ids=ids).logits,
                                   atol=2e-4, rtol=0)
    spec, again = txdsl.from_hf(hf)  # and back: the same rope(...) arguments
    assert again.ir.decoder.position.args == ours.ir.decoder.position.args, spec


def llama(**rope) -> T.LlamaForCausalLM:
    config = T.LlamaConfig(vocab_size=61, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=4, intermediate_size=48,
                           max_position_embeddings=64, rope_parameters=rope)
    return T.LlamaForCausalLM(config)


def test_scalings_txdsl_lacks_are_refused_by_name():
    with pytest.raises(MappingError, match="rope scaling 'longrope' has no txdsl equivalent"):
        txdsl.from_hf(llama(rope_type="longrope", rope_theta=500.0, factor=2.0,
                            short_factor=[1.0] * 4, long_factor=[2.0] * 4,
                            original_max_position_embeddings=16))
    with pytest.raises(MappingError, match="mscale"):
        txdsl.from_hf(llama(rope_type="yarn", rope_theta=500.0, factor=4.0, mscale=1.0,
                            mscale_all_dim=1.0, original_max_position_embeddings=16))


def test_what_hf_lacks_is_refused_on_export():
    dynamic = txdsl.build(SPEC.format(scaling=", scaling: dynamic, factor: 2.0, "
                                      "original_context: 16"), backend="eager").module
    with pytest.raises(MappingError, match="counts from max_position_embeddings"):
        txdsl.to_hf(dynamic)
    partial = txdsl.build(SPEC.format(scaling=", fraction: 0.5"), backend="eager").module
    with pytest.raises(MappingError, match=r"rope\(fraction: 0.5\)"):
        txdsl.to_hf(partial)
