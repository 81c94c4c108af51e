"""The MoE load-balancing loss ignores padding: against Hugging Face's
``load_balancing_loss_func(..., attention_mask)`` (Mixtral) with the same router, and
through a built model, where what the padded positions hold no longer moves the loss."""

from __future__ import annotations

import torch
from torch import nn

import txdsl
import txdsl_ffn
from txdsl.plugins import load_registry
from txdsl.sdk import BuildContext, Dims, StackState

REGISTRY = load_registry({"ffn": txdsl_ffn})
D, H, E = 16, 24, 4


def test_padding_is_excluded_as_hf_does():
    from transformers.models.mixtral import modeling_mixtral as mx

    impl = REGISTRY.implementations("ffn", "moe")[0]
    moe = impl.build(impl.args(hidden=H, experts=E, top_k=2, act="silu"),
                     BuildContext(dims=Dims(d_model=D, width=D, embed_size=D))).eval()
    with torch.no_grad():
        moe.router.weight.mul_(10.0)  # routing that differs token to token
    x = torch.randn(3, 7, D)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, 5:] = 0
    state = StackState(inputs={"attention_mask": mask})
    moe(x, state=state)
    logits = nn.functional.linear(x.reshape(-1, D), moe.router.weight)
    hf = mx.load_balancing_loss_func((logits,), E, 2, attention_mask=mask)
    hf_unmasked = mx.load_balancing_loss_func((logits,), E, 2)
    torch.testing.assert_close(state.aux_losses["load_balancing"], 0.01 * hf)
    assert (hf - hf_unmasked).abs() > 1e-3  # the mask matters here


def test_a_built_model_ignores_what_padding_holds():
    spec = """
    model moe_pad {
      vocab = 40; d_model = 32; heads = 4
      embedding { tokens = vocab }
      decoder(2) { norm = layernorm; position = rope; attention = full(heads: heads)
                   ffn = moe(hidden: 48, experts: 4, top_k: 2, capacity_factor: none) }
      head = lm
    }
    """
    model = txdsl.build(spec, backend="eager", seed=0).module.eval()
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.ffn.router.weight.mul_(20.0)
    ids = torch.randint(1, 40, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :4] = 0  # left padding
    other = ids.clone()
    other[1, :4] = (ids[1, :4] + 7) % 40  # other tokens under the padding
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask).aux_losses["load_balancing"]
        b = model(input_ids=other, attention_mask=mask).aux_losses["load_balancing"]
        c = model(input_ids=other).aux_losses["load_balancing"]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert (a - c).abs() > 1e-4  # without the mask those positions count
