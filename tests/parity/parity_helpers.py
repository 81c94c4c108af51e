"""Shared by the parity tests: where a test's IR comes from, weight scaling and copying,
the BERT-family encoder weight mapping, and building a (Hugging Face, ours) pair."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch

from txdsl.ir import Component, ModelIR

SPECS = Path(__file__).resolve().parents[2] / "specs"


def comp(family: str, kind: str, **args: Any) -> Component:
    return Component(family=family, kind=kind, args=args)


def parse_spec(spec: str, text: str) -> ModelIR | None:
    """``text`` (which extends ``specs/<spec>``) parsed with ``specs/`` as its base.

    ``TXDSL_PARITY_HAND_IR=1`` returns ``None`` instead, so the numerics run on
    the hand-built IRs (a check that the spec and the hand-built IR agree).
    """
    if os.environ.get("TXDSL_PARITY_HAND_IR") == "1":
        return None
    import txdsl

    return txdsl.parse(text, base_dir=str(SPECS))


def check_spec_parses(spec: str, text: str) -> None:
    """The body of each parity file's ``test_tiny_spec_parses``."""
    import txdsl

    assert (SPECS / spec).exists(), spec
    assert txdsl.parse(text, base_dir=str(SPECS)) is not None


@torch.no_grad()
def copy_(dst: torch.Tensor, src: torch.Tensor) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"shape mismatch: {tuple(dst.shape)} <- {tuple(src.shape)}")
    dst.copy_(src)


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> None:
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


@torch.no_grad()
def scale_up(model: torch.nn.Module, *, std: float = 0.1,
             norm_names: tuple[str, ...] = ("LayerNorm", "layer_norm"),
             seed: int | None = 0) -> torch.nn.Module:
    """Random weights larger than a fresh init, so that a mistake shows in the outputs:
    norm weights ``1 + 0.1 N(0, 1)``, norm biases and every other tensor ``N(0, std)``.
    ``seed=None`` draws from the global generator as it stands (no reseeding)."""
    if seed is not None:
        torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if any(n in name for n in norm_names) and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.normal_(0.0, std)
    return model


def spec_ir(spec: str, text: str) -> ModelIR:
    """:func:`parse_spec` for families with no hand-built IR: skipped under
    ``TXDSL_PARITY_HAND_IR=1`` (their spec is the only source of the IR)."""
    import pytest

    ir = parse_spec(spec, text)
    if ir is None:
        pytest.skip(f"no hand-built IR for {spec}: the spec is the only source")
    return ir


BERT_QKV = (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"))


def bert_encoder_weights(hf, qkv: tuple[tuple[str, str], ...] = BERT_QKV
                         ) -> dict[str, torch.Tensor]:
    """Our names for a BERT-family ``hf`` model's embeddings and encoder layers
    (RoBERTa, Longformer, BigBird): ``qkv`` pairs our projection names with the names
    under each layer's ``attention.self`` (Longformer adds its global projections)."""
    sd, e = {}, hf.embeddings
    sd["embedding.tokens.weight"] = e.word_embeddings.weight
    sd["embedding.position.embed.weight"] = e.position_embeddings.weight
    sd["embedding.token_types.weight"] = e.token_type_embeddings.weight
    sd["embedding.norm.weight"], sd["embedding.norm.bias"] = e.LayerNorm.weight, e.LayerNorm.bias
    for i, layer in enumerate(hf.encoder.layer):
        p, att = f"encoder.layers.{i}.", layer.attention
        pairs = [(f"attention.{ours}", getattr(att.self, theirs)) for ours, theirs in qkv]
        pairs += [("attention.out_proj", att.output.dense),
                  ("attention_norm", att.output.LayerNorm),
                  ("ffn.up", layer.intermediate.dense), ("ffn.down", layer.output.dense),
                  ("ffn_norm", layer.output.LayerNorm)]
        for ours, theirs in pairs:
            sd[p + ours + ".weight"], sd[p + ours + ".bias"] = theirs.weight, theirs.bias
    return sd


def detached(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in sd.items()}


def hf_pair(hf, spec: str, text: str, registry,
            weights: Callable[[Any], dict[str, torch.Tensor]] | None = None,
            force: dict[str, str] | None = None):
    """``(hf, ours)``: ``text`` (extending ``specs/<spec>``) built, ``hf``'s weights loaded
    strictly (``weights(hf)``, or ``txdsl.interop.load_hf_weights`` when ``None``), the
    parameter counts asserted equal; both in eval mode."""
    from txdsl.back.construct import construct

    ours = construct(spec_ir(spec, text), registry=registry, force=force or {})
    if weights is None:
        from txdsl.interop import load_hf_weights

        load_hf_weights(ours, hf)  # txdsl.interop's mapping, strictly
    else:
        ours.load_state_dict(weights(hf), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    return hf.eval(), ours.eval()
