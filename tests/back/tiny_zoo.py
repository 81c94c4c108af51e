"""Tiny GPT-2-, LLaMA- and BERT-shaped specs, and weights scaled up so numeric mistakes show.

Shared by ``test_bfloat16.py`` and ``test_quantize.py`` (imported by name: ``tiny_zoo``).
"""

from __future__ import annotations

from pathlib import Path

import torch

GPT2 = """\
model gpt2_tiny {
  vocab = 256
  d_model = 64
  heads = 4
  layers = 2
  context = 64
  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }
  decoder(layers) {
    residual = pre
    norm = layernorm(eps: 1e-5)
    attention = full(heads: heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu_tanh)
    final_norm = layernorm(eps: 1e-5)
  }
  head = lm(tied: true)
}
"""

LLAMA = """\
model llama_tiny {
  vocab = 256
  d_model = 64
  heads = 4
  layers = 2
  context = 64
  embedding {
    tokens = vocab
  }
  decoder(layers) {
    residual = pre
    norm = rmsnorm(eps: 1e-5)
    position = rope(theta: 10000.0)
    attention = full(heads: heads, kv_heads: 2, bias: false)
    ffn = swiglu(hidden: 128, bias: false)
    final_norm = rmsnorm(eps: 1e-5)
  }
  head = lm(tied: false)
}
"""

BERT = """\
model bert_tiny {
  vocab = 256
  d_model = 64
  heads = 4
  layers = 2
  context = 64
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
    ffn = mlp(hidden: 4 * d_model, act: gelu)
  }
  head = mlm(tied: true, act: gelu, eps: 1e-12)
}
"""

SPECS = {"gpt2": GPT2, "llama": LLAMA, "bert": BERT}
SCALE = 4.0  # init std 0.02 -> 0.08: logits of order 10, not 1


def scaled_weights(spec: str, directory: Path, scale: float = SCALE) -> Path:
    """A safetensors file of ``spec``'s seed-0 weights with every matrix times ``scale``."""
    import txdsl
    from txdsl.back.weights import save_weights

    model = txdsl.build(spec, progress=False).module
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(scale)
    path = directory / "weights.safetensors"
    save_weights(model, path)
    return path


def fixed_input(model, seed: int = 7, batch: int = 2, seq: int = 24) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (batch, seq), generator=g)
    inputs = {"input_ids": ids}
    if "token_types" in dict(model.embedding.named_children()):
        inputs["token_type_ids"] = torch.randint(0, 2, (batch, seq), generator=g)
    return inputs
