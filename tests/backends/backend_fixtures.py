"""Helpers for backend tests: a tiny LM module (no spec needed), a tiny spec, skip marks.

Imported by name (``backend_fixtures``), not as ``conftest``: other test folders
have a ``conftest`` too."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

TINY_SPEC = """\
model tiny {
  vocab = 101
  d_model = 32
  n_heads = 4
  layers = 2
  context = 64

  embedding {
    tokens = vocab
    position = learned(max_len: context)
  }

  decoder(layers) {
    residual = pre
    norm = layernorm(eps: 1e-5)
    attention = full(heads: n_heads)
    ffn = mlp(hidden: 4 * d_model, act: gelu_tanh)
    final_norm = layernorm(eps: 1e-5)
  }

  head = lm(tied: true)
}
"""




@dataclass
class TinyOutput:
    logits: Tensor
    hidden: Tensor | None = None


class TinyLM(nn.Module):
    """Embedding -> tanh(Linear) -> head tied to the embedding; HF-style keyword call."""

    def __init__(self, vocab: int = 50, d: int = 16):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.proj = nn.Linear(d, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight  # tied

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> TinyOutput:
        h = torch.tanh(self.proj(self.emb(input_ids)))  # (B, T, d)
        if attention_mask is not None:
            h = h * attention_mask[..., None].to(h.dtype)
        return TinyOutput(logits=self.head(h), hidden=h)
