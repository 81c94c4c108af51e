"""Small model IRs built by hand (the runtime is tested independently of the parser)."""

from __future__ import annotations

from typing import Any

from txdsl.ir import Component, EmbeddingIR, HeadIR, LayerIR, ModelIR, StackIR


def comp(family: str, kind: str, **args: Any) -> Component:
    return Component(family=family, kind=kind, args=args)


def layernorm(eps: float = 1e-5) -> Component:
    return comp("norm", "layernorm", eps=eps)


def full(heads: int, **args: Any) -> Component:
    return comp("attention", "full", heads=heads, **args)


def mlp(hidden: int, act: str = "gelu", **args: Any) -> Component:
    return comp("ffn", "mlp", hidden=hidden, act=act, **args)


def layers(n: int, **fields: Any) -> tuple[LayerIR, ...]:
    shares = fields.pop("shares", None)  # callable i -> shares index, or None
    return tuple(LayerIR(index=i, shares=shares(i) if shares else None, **fields)
                 for i in range(n))


def decoder_only(*, d_model: int = 32, heads: int = 4, n_layers: int = 2, vocab: int = 50,
                 context: int = 32, residual: str = "pre", position: Component | None = None,
                 stack_position: Component | None = None, ffn: Component | None = None,
                 norm: Component | None = None, final_norm: bool = True, tied: bool = True,
                 shares=None, size: int | None = None, dropout: float = 0.0,
                 attention: Component | None = None) -> ModelIR:
    """A GPT-2-like causal LM, every part overridable."""
    norm = norm if norm is not None else layernorm()
    if position is None and stack_position is None:
        position = comp("position", "learned", max_len=context)
    return ModelIR(
        name="tiny_decoder", d_model=d_model, params={"context": context},
        embedding=EmbeddingIR(tokens=vocab, size=size or d_model, position=position,
                              norm=layernorm() if size else None),
        decoder=StackIR(role="decoder", causal=True, position=stack_position,
                        layers=layers(n_layers, residual=residual, norm=norm,
                                      attention=attention or full(heads),
                                      ffn=ffn if ffn is not None else mlp(4 * d_model),
                                      dropout=dropout, shares=shares),
                        final_norm=norm if final_norm else None),
        heads=(HeadIR(name="lm", head=comp("head", "lm", tied=tied)),),
    )


def encoder_decoder(*, d_model: int = 32, heads: int = 4, n_enc: int = 2, n_dec: int = 2,
                    vocab: int = 40, context: int = 32, residual: str = "post") -> ModelIR:
    """A Vaswani-style encoder-decoder with sinusoidal positions and a tied LM head."""
    norm = layernorm()
    enc = StackIR(role="encoder", causal=False,
                  layers=layers(n_enc, residual=residual, norm=norm, attention=full(heads),
                                ffn=mlp(2 * d_model, "relu")),
                  final_norm=norm)
    dec = StackIR(role="decoder", causal=True,
                  layers=layers(n_dec, residual=residual, norm=norm, attention=full(heads),
                                cross_attention=full(heads), ffn=mlp(2 * d_model, "relu")),
                  final_norm=norm)
    return ModelIR(
        name="tiny_seq2seq", d_model=d_model, params={"context": context},
        embedding=EmbeddingIR(tokens=vocab, size=d_model, scale=True,
                              position=comp("position", "sinusoidal", max_len=context)),
        encoder=enc, decoder=dec,
        heads=(HeadIR(name="lm", head=comp("head", "lm", tied=True)),),
    )


def encoder_only(*, d_model: int = 32, heads: int = 4, n_layers: int = 2, vocab: int = 50,
                 context: int = 32, token_types: int = 2) -> ModelIR:
    """A BERT-like encoder with an MLM head and a pooler."""
    norm = layernorm(1e-12)
    return ModelIR(
        name="tiny_encoder", d_model=d_model, params={"context": context},
        embedding=EmbeddingIR(tokens=vocab, size=d_model, token_types=token_types, norm=norm,
                              position=comp("position", "learned", max_len=context)),
        encoder=StackIR(role="encoder", causal=False,
                        layers=layers(n_layers, residual="post", norm=norm, attention=full(heads),
                                      ffn=mlp(4 * d_model, "gelu"))),
        heads=(HeadIR(name="mlm", head=comp("head", "mlm", tied=True)),
               HeadIR(name="pooler", head=comp("head", "pooler"))),
    )
