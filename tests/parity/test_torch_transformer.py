"""Encoder-decoder parity: txdsl's stacks against ``torch.nn.Transformer`` (post-norm,
ReLU, final encoder/decoder LayerNorms) with the same weights, with source and
target key padding and the causal target mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from parity_helpers import assert_close, check_spec_parses, comp, parse_spec
from txdsl.back.construct import construct
from txdsl.ir import EmbeddingIR, HeadIR, LayerIR, ModelIR, StackIR

VOCAB, D, HEADS, LAYERS, D_FF, CONTEXT = 60, 32, 4, 2, 64, 32

TINY = f"""import "transformer.tx"
model tiny extends transformer {{
  vocab = {VOCAB}; d_model = {D}; heads = {HEADS}; layers = {LAYERS}; d_ff = {D_FF}
}}
"""


def transformer_ir() -> ModelIR:
    """A tiny Vaswani Transformer, with final norms as ``nn.Transformer`` has them."""
    norm = comp("norm", "layernorm", eps=1e-5)
    ir = parse_spec("transformer.tx", TINY)
    if ir is None:
        attn = comp("attention", "full", heads=HEADS)
        ffn = comp("ffn", "mlp", hidden=D_FF, act="relu")
        enc = tuple(LayerIR(index=i, residual="post", norm=norm, attention=attn, ffn=ffn)
                    for i in range(LAYERS))
        dec = tuple(LayerIR(index=i, residual="post", norm=norm, attention=attn,
                            cross_attention=attn, ffn=ffn) for i in range(LAYERS))
        ir = ModelIR(
            name="tiny", d_model=D, params={"vocab": VOCAB},
            embedding=EmbeddingIR(tokens=VOCAB, size=D, scale=True,
                                  position=comp("position", "sinusoidal")),
            encoder=StackIR(role="encoder", causal=False, layers=enc),
            decoder=StackIR(role="decoder", causal=True, layers=dec),
            heads=(HeadIR(name="lm", head=comp("head", "lm", tied=True)),),
        )
    # nn.Transformer ends each stack with a LayerNorm; the paper's model does not
    return ir.model_copy(update={
        "encoder": ir.encoder.model_copy(update={"final_norm": norm}),
        "decoder": ir.decoder.model_copy(update={"final_norm": norm})})


def torch_transformer() -> nn.Transformer:
    torch.manual_seed(0)
    t = nn.Transformer(d_model=D, nhead=HEADS, num_encoder_layers=LAYERS,
                       num_decoder_layers=LAYERS, dim_feedforward=D_FF, dropout=0.0,
                       activation="relu", batch_first=True, norm_first=False)
    with torch.no_grad():
        for name, p in t.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
    t.encoder.use_nested_tensor = False  # the prototype nested-tensor fast path warns
    return t.eval()


def causal_mask(T: int) -> torch.Tensor:
    """nn.Transformer's causal mask as bool (True: masked), the same type as the padding masks."""
    return torch.ones(T, T, dtype=torch.bool).triu(1)


def _mha(sd: dict, prefix: str, mha: nn.MultiheadAttention) -> None:
    for j, name in enumerate(("q_proj", "k_proj", "v_proj")):  # in_proj = [q; k; v]
        sd[f"{prefix}.{name}.weight"] = mha.in_proj_weight[j * D:(j + 1) * D]
        sd[f"{prefix}.{name}.bias"] = mha.in_proj_bias[j * D:(j + 1) * D]
    sd[f"{prefix}.out_proj.weight"] = mha.out_proj.weight
    sd[f"{prefix}.out_proj.bias"] = mha.out_proj.bias


def _ln(sd: dict, prefix: str, ln: nn.LayerNorm) -> None:
    sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = ln.weight, ln.bias


def stacks_state_dict(t: nn.Transformer) -> dict[str, torch.Tensor]:
    sd: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(t.encoder.layers):
        p = f"encoder.layers.{i}"
        _mha(sd, f"{p}.attention", layer.self_attn)
        _ln(sd, f"{p}.attention_norm", layer.norm1)
        _ln(sd, f"{p}.ffn.up", layer.linear1)
        _ln(sd, f"{p}.ffn.down", layer.linear2)
        _ln(sd, f"{p}.ffn_norm", layer.norm2)
    for i, layer in enumerate(t.decoder.layers):
        p = f"decoder.layers.{i}"
        _mha(sd, f"{p}.attention", layer.self_attn)
        _ln(sd, f"{p}.attention_norm", layer.norm1)
        _mha(sd, f"{p}.cross_attention", layer.multihead_attn)
        _ln(sd, f"{p}.cross_attention_norm", layer.norm2)
        _ln(sd, f"{p}.ffn.up", layer.linear1)
        _ln(sd, f"{p}.ffn.down", layer.linear2)
        _ln(sd, f"{p}.ffn_norm", layer.norm3)
    _ln(sd, "encoder.final_norm", t.encoder.norm)
    _ln(sd, "decoder.final_norm", t.decoder.norm)
    return {k: v.detach().clone() for k, v in sd.items()}


@pytest.fixture(scope="module", params=["reference", "sdpa"])
def pair(request, registry):
    t = torch_transformer()
    ours = construct(transformer_ir(), registry=registry, force={"attention": request.param})
    missing, unexpected = ours.load_state_dict(stacks_state_dict(t), strict=False)
    assert not unexpected
    assert sorted(missing) == ["embedding.tokens.weight", "heads.lm.weight"]  # ours alone
    return t, ours.eval()


def inputs():
    g = torch.Generator().manual_seed(7)
    src = torch.randint(1, VOCAB, (3, 11), generator=g)
    tgt = torch.randint(1, VOCAB, (3, 9), generator=g)
    src_mask = torch.ones_like(src)
    src_mask[1, 6:] = 0
    src_mask[2, 2:] = 0
    tgt_mask = torch.ones_like(tgt)  # right padding: no real query sees it (causal)
    tgt_mask[0, 5:] = 0
    return src, tgt, src_mask, tgt_mask


@torch.no_grad()
def test_stacks_match_nn_transformer(pair):
    t, ours = pair
    src, tgt, src_mask, tgt_mask = inputs()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, src.shape[1], D, generator=g)
    y = torch.randn(3, tgt.shape[1], D, generator=g)
    memory, _ = ours.encoder(x, attention_mask=src_mask)
    out, _ = ours.decoder(y, attention_mask=tgt_mask, memory=memory, memory_mask=src_mask)
    causal = causal_mask(tgt.shape[1])
    ref_memory = t.encoder(x, src_key_padding_mask=src_mask == 0)
    ref = t.decoder(y, ref_memory, tgt_mask=causal, tgt_key_padding_mask=tgt_mask == 0,
                    memory_key_padding_mask=src_mask == 0, tgt_is_causal=True)
    real_src, real_tgt = src_mask.bool(), tgt_mask.bool()
    assert_close(memory[real_src], ref_memory[real_src], atol=1e-5)
    assert_close(out[real_tgt], ref[real_tgt], atol=1e-5)


@torch.no_grad()
def test_model_logits_match(pair):
    """The whole model: the (shared, scaled) embedding feeds nn.Transformer, the tied head reads it."""
    t, ours = pair
    src, tgt, src_mask, tgt_mask = inputs()
    out = ours(src, attention_mask=src_mask, decoder_input_ids=tgt,
               decoder_attention_mask=tgt_mask)
    emb = ours.embedding
    ref = t(emb(src), emb(tgt), tgt_mask=causal_mask(tgt.shape[1]),
            src_key_padding_mask=src_mask == 0, tgt_key_padding_mask=tgt_mask == 0,
            memory_key_padding_mask=src_mask == 0, tgt_is_causal=True)
    logits = F.linear(ref, emb.tokens.weight)
    real = tgt_mask.bool()
    assert_close(out.logits[real], logits[real], atol=1e-5)
    assert_close(out.encoder_last_hidden_state[src_mask.bool()],
                 t.encoder(emb(src), src_key_padding_mask=src_mask == 0)[src_mask.bool()],
                 atol=1e-5)


def test_tiny_spec_parses():
    """specs/transformer.tx with the tiny overrides parses (the tests above then use it)."""
    check_spec_parses("transformer.tx", TINY)
