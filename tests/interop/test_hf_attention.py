"""A txdsl attention kind that only changes ``attend`` runs inside a Hugging Face model,
registered with ``AttentionInterface`` and its mask with ``AttentionMaskInterface``."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import transformers as T
from hf_models import make
from txdsl.interop import MappingError
from txdsl.interop.attention import qualifies, register_hf_attention
from txdsl.sdk.attention import Attention, repeat_kv, softmax_attention
from txdsl_attention.full import ReferenceAttention

WINDOW = 4


def window(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
    """A query sees the WINDOW keys ending at its own slot (Mistral's sliding window)."""
    return q - kv < WINDOW


class LocalAttention(Attention):
    """A small kind of the test's own: exact attention over a sliding window."""

    def attend(self, q, k, v, *, mask, position, state):
        groups = self.heads // self.kv_heads
        mask = mask.with_pattern(("window", WINDOW), window)
        return softmax_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), mask=mask,
                                 scale=self.scale)


def attend_only(cls, config) -> Attention:
    """A txdsl module used for its ``attend`` alone: HF does the projections."""
    hd = config.hidden_size // config.num_attention_heads
    none = dict(q_proj=nn.Identity(), k_proj=nn.Identity(), v_proj=nn.Identity(),
                out_proj=nn.Identity())
    return cls(heads=config.num_attention_heads, kv_heads=config.num_key_value_heads,
               head_dim=hd, **none)


@pytest.fixture(scope="module")
def llama():
    hf, _ = make("llama", 0)
    register_hf_attention("txdsl_full", attend_only(ReferenceAttention, hf.config))
    register_hf_attention("txdsl_local", attend_only(LocalAttention, hf.config), pattern=window)
    return hf


def batch():
    x = torch.randint(1, 100, (3, 13), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(x)
    mask[1, :5] = 0
    mask[2, :2] = 0
    return x.masked_fill(mask == 0, 0), mask


def run(model, implementation: str, **kw):
    model.set_attn_implementation(implementation)
    with torch.no_grad():
        return model(**kw)


def test_full_reference_inside_llama_matches_eager(llama):
    x, mask = batch()
    a = run(llama, "eager", input_ids=x, attention_mask=mask).logits
    b = run(llama, "txdsl_full", input_ids=x, attention_mask=mask).logits
    torch.testing.assert_close(b[mask.bool()], a[mask.bool()], atol=1e-5, rtol=0)


def test_full_reference_generates_eagers_tokens(llama):
    x, mask = batch()
    kw = dict(attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0,
              eos_token_id=None)
    llama.set_attn_implementation("eager")
    with torch.no_grad():
        expected = llama.generate(x, **kw)
        llama.set_attn_implementation("txdsl_full")
        got = llama.generate(x, **kw)
    assert torch.equal(got, expected)


def test_local_kind_inside_llama_is_mistrals_sliding_window(llama):
    """Reference: transformers' own Mistral (Llama's layout plus a sliding window),
    with the same weights and its eager attention."""
    config = T.MistralConfig(**{k: v for k, v in llama.config.to_dict().items()
                                if k in T.MistralConfig().to_dict()})
    config.sliding_window, config._attn_implementation = WINDOW, "eager"
    mistral = T.MistralForCausalLM(config).eval()
    mistral.load_state_dict(llama.state_dict())
    x, mask = batch()
    with torch.no_grad():
        expected = mistral(input_ids=x, attention_mask=mask).logits
    got = run(llama, "txdsl_local", input_ids=x, attention_mask=mask).logits
    full = run(llama, "eager", input_ids=x, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=0)
    assert (got[real] - full[real]).abs().max() > 1e-2  # the window did change something


def test_which_kinds_qualify():
    from txdsl_attention.full import ReferenceAttention

    class OwnForward(ReferenceAttention):
        def forward(self, x, memory=None, **kw):
            return x

    config = T.LlamaConfig(hidden_size=8, num_attention_heads=2, num_key_value_heads=1)
    assert qualifies(attend_only(ReferenceAttention, config)) is None
    assert "overrides forward" in qualifies(attend_only(OwnForward, config))
    with pytest.raises(MappingError, match="overrides forward"):
        register_hf_attention("txdsl_bad", attend_only(OwnForward, config))
