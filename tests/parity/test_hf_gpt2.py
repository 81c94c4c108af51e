"""GPT-2 parity: ``transformers.GPT2LMHeadModel`` with the same weights gives the same
logits (with and without padding) and the same greedy generations."""

from __future__ import annotations

import pytest
import torch

from parity_helpers import assert_close, check_spec_parses, comp, parse_spec
from txdsl.back.construct import construct
from txdsl.interop import load_hf_weights
from txdsl.ir import EmbeddingIR, HeadIR, LayerIR, ModelIR, StackIR

transformers = pytest.importorskip("transformers")

VOCAB, D, HEADS, LAYERS, CONTEXT = 100, 64, 4, 2, 32

TINY = f"""import "gpt2.tx"
model tiny extends gpt2 {{
  vocab = {VOCAB}; d_model = {D}; heads = {HEADS}; layers = {LAYERS}; context = {CONTEXT}
}}
"""


def gpt2_ir() -> ModelIR:
    """The tiny GPT-2: from ``specs/gpt2.tx`` when the front end can parse it, else by hand."""
    ir = parse_spec("gpt2.tx", TINY)
    if ir is not None:
        return ir
    norm = comp("norm", "layernorm", eps=1e-5)
    layer = dict(residual="pre", norm=norm, attention=comp("attention", "full", heads=HEADS),
                 ffn=comp("ffn", "mlp", hidden=4 * D, act="gelu_tanh"))
    return ModelIR(
        name="tiny", d_model=D, params={"vocab": VOCAB, "context": CONTEXT},
        embedding=EmbeddingIR(tokens=VOCAB, size=D,
                              position=comp("position", "learned", max_len=CONTEXT)),
        decoder=StackIR(role="decoder", causal=True,
                        layers=tuple(LayerIR(index=i, **layer) for i in range(LAYERS)),
                        final_norm=norm),
        heads=(HeadIR(name="lm", head=comp("head", "lm", tied=True)),),
    )


def hf_gpt2() -> "transformers.GPT2LMHeadModel":
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=CONTEXT, n_embd=D, n_layer=LAYERS, n_head=HEADS,
        n_inner=4 * D, activation_function="gelu_new", layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():  # larger, distinct weights than the 0.02 init: real differences show
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or "ln_f.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module", params=["reference", "sdpa"])
def pair(request, registry):
    hf = hf_gpt2()
    ours = construct(gpt2_ir(), registry=registry, force={"attention": request.param})
    load_hf_weights(ours, hf)  # txdsl.interop's GPT-2 mapping, strictly
    assert ours.embedding.tokens.weight is ours.heads.lm.weight  # still tied after loading
    return hf, ours.eval()


def ids(B: int = 3, T: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_logits_match(pair):
    hf, ours = pair
    x = ids()
    assert_close(ours(x).logits, hf(x).logits, atol=1e-4)


@torch.no_grad()
def test_hidden_states_match(pair):
    hf, ours = pair
    x = ids()
    a = ours(x, output_hidden_states=True).hidden_states
    b = hf(x, output_hidden_states=True).hidden_states
    assert len(a) == len(b) == LAYERS + 1
    for u, v in zip(a, b):
        assert_close(u, v, atol=1e-4)


@torch.no_grad()
def test_right_padding(pair):
    hf, ours = pair
    x = ids()
    mask = torch.ones_like(x)
    mask[1, 8:] = 0
    mask[2, 3:] = 0
    a, b = ours(x, attention_mask=mask).logits, hf(x, attention_mask=mask).logits
    real = mask.bool()
    assert_close(a[real], b[real], atol=1e-4)
    # padding on the right changes nothing for the real tokens
    assert_close(a[1, :8], ours(x[1:2, :8]).logits[0], atol=1e-4)


@torch.no_grad()
def test_left_padding_with_positions(pair):
    hf, ours = pair
    x = ids()
    mask = torch.ones_like(x)
    mask[0, :4] = 0
    mask[2, :7] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    a = ours(x, attention_mask=mask, position_ids=pos).logits
    b = hf(x, attention_mask=mask, position_ids=pos).logits
    real = mask.bool()
    assert_close(a[real], b[real], atol=1e-4)
    assert_close(a[2, 7:], ours(x[2:3, 7:]).logits[0], atol=1e-4)  # as if unpadded


@torch.no_grad()
@pytest.mark.parametrize("padded", [False, True])
def test_greedy_generation_matches(pair, padded):
    hf, ours = pair
    x = ids(B=2, T=6, seed=3)
    mask = torch.ones_like(x)
    if padded:
        mask[1, :3] = 0
        x = x.masked_fill(mask == 0, 0)
    new = 10
    expected = hf.generate(x, attention_mask=mask, max_new_tokens=new, do_sample=False,
                           pad_token_id=0, eos_token_id=None)
    got = ours.generate(x, new, attention_mask=mask)
    assert got.shape == (2, 6 + new)
    assert torch.equal(got, expected)


def test_tiny_spec_parses():
    """specs/gpt2.tx with the tiny overrides parses (the tests above then use it)."""
    check_spec_parses("gpt2.tx", TINY)
