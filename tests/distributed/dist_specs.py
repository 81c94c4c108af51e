"""The tiny specs the distributed tests shard: GPT-2- (tied head), LLaMA- (GQA, RoPE, SwiGLU),
T5-shaped (encoder-decoder, bucketed position bias, cross-attention, tied scaled head) and
multi-query (K/V replicated under TP).
Odd vocabularies (97, 101, 67) so the vocabulary split is uneven, as GPT-2's 50257 is."""

GPT2 = """
model tiny_gpt2 {
  vocab = 97
  d_model = 32
  heads = 4
  layers = 2
  context = 32
  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }
  decoder(layers) {
    residual = pre
    norm = layernorm
    attention = full(heads: heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu_tanh)
    final_norm = layernorm
  }
  head = lm(tied: true)
}
"""

LLAMA = """
model tiny_llama {
  vocab = 101
  d_model = 32
  heads = 4
  kv_heads = 2
  layers = 2
  context = 32
  embedding {
    tokens = vocab
  }
  decoder(layers) {
    residual = pre
    norm = rmsnorm(eps: 1e-5)
    position = rope(theta: 10000.0)
    attention = full(heads: heads, kv_heads: kv_heads, bias: false)
    ffn = swiglu(hidden: 88, bias: false)
    final_norm = rmsnorm(eps: 1e-5)
  }
  head = lm(tied: false)
}
"""

T5 = """
model tiny_t5 {
  vocab = 67
  d_model = 32
  heads = 4
  layers = 2
  embedding {
    tokens = vocab
  }
  encoder(layers) {
    residual = pre
    norm = rmsnorm(eps: 1e-6)
    position = t5_bias(buckets: 8, max_distance: 16, bidirectional: true)
    attention = full(heads: heads, head_dim: 8, bias: false, scale: 1.0)
    ffn = mlp(hidden: 64, act: relu, bias: false)
    final_norm = rmsnorm(eps: 1e-6)
  }
  decoder(layers) {
    residual = pre
    norm = rmsnorm(eps: 1e-6)
    position = t5_bias(buckets: 8, max_distance: 16, bidirectional: false)
    attention = full(heads: heads, head_dim: 8, bias: false, scale: 1.0)
    cross_attention = full(heads: heads, head_dim: 8, bias: false, scale: 1.0)
    ffn = mlp(hidden: 64, act: relu, bias: false)
    final_norm = rmsnorm(eps: 1e-6)
  }
  head = lm(tied: true, scale: d_model ** -0.5)
}
"""

# Multi-query attention (one key/value head, Shazeer 2019): at tp 2 K/V are replicated and
# each rank keeps the one head.
MQA = LLAMA.replace("model tiny_llama", "model tiny_mqa").replace("kv_heads = 2", "kv_heads = 1")

# BERT-shaped with a tied MLM head, which declares no split: the token embedding stays whole.
BERT = """
model tiny_bert {
  vocab = 89
  d_model = 32
  heads = 4
  layers = 2
  context = 32
  embedding {
    tokens = vocab
    position = learned(max_len: context)
    token_types = 2
    norm = layernorm(eps: 1e-12)
  }
  encoder(layers) {
    residual = post
    norm = layernorm(eps: 1e-12)
    attention = full(heads: heads)
    ffn = mlp(hidden: 64, act: gelu)
  }
  head = mlm(tied: true)
}
"""

SPECS = {"gpt2": GPT2, "llama": LLAMA, "t5": T5, "mqa": MQA, "bert": BERT}
