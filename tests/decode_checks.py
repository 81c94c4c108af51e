"""Checks a decoder with a decode state passes, shared by the kinds' decoding tests:
stepping with the state == the full forward, and a left-padded row == the row alone."""

from __future__ import annotations

import torch

TINY = """
model tiny {{
  vocab = 50; d_model = 32; heads = 4; layers = 2; context = 320
  embedding {{ tokens = vocab; position = learned(max_len: context) }}
  {stack}(layers) {{
    residual = pre; norm = layernorm
    attention = {attention}
    ffn = mlp(hidden: 64, act: gelu)
    final_norm = layernorm
  }}
  heads {{ lm = lm(tied: true) }}
}}
"""


def tiny_spec(attention: str, stack: str = "decoder") -> str:
    """A two-layer model over a vocabulary of 50 with learned positions (context 320)."""
    return TINY.format(attention=attention, stack=stack)


def prompt(B: int = 2, T: int = 5, vocab: int = 50) -> torch.Tensor:
    return torch.randint(1, vocab, (B, T), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def assert_steps_equal_the_full_forward(model, new: int, what: str) -> None:
    """Greedy ``generate`` of ``new`` tokens with the state; then the step-by-step logits
    equal one forward over the generated sequence (no state), and its argmax picks every
    generated token (greedy decoding by full forwards)."""
    x = prompt()
    T = x.shape[1]
    cached = model.generate(x, new)
    assert cached.shape == (2, T + new)
    out = model(cached[:, :T], use_cache=True)
    cache, steps = out.past_key_values, [out.logits]
    for t in range(T, T + new - 1):
        out = model(cached[:, t:t + 1], past_key_values=cache, use_cache=True)
        steps.append(out.logits)
    full = model(cached[:, :-1]).logits
    err = (torch.cat(steps, dim=1) - full).abs().max().item()
    assert err < 1e-4, f"{what}: max |step - full| = {err:.2e}"
    assert torch.equal(full[:, T - 1:].argmax(-1), cached[:, T:])


@torch.no_grad()
def assert_left_padded_row_decodes_alone(model, pad: int = 2) -> None:
    """Row 1 left-padded by ``pad`` tokens generates what it generates alone."""
    x = prompt(T=pad + 4)
    mask = torch.ones_like(x)
    mask[1, :pad] = 0
    got = model.generate(x.masked_fill(mask == 0, 0), 12, attention_mask=mask)
    alone = model.generate(x[1:, pad:], 12)
    assert torch.equal(got[1, pad:], alone[0])
