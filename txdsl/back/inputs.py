"""Example inputs: small random tensors of the right kind for a model, keyed like its call.

What a backend lowers (traces, exports) the model with, and what ``txdsl
build`` runs once to show the output. :func:`serving_inputs` names every
input a deployed model takes (what an exported ``model.pt2`` or
``model.onnx`` must accept to serve a padded batch); ``example_inputs(...,
full=True)`` makes all of them, with a padded row in each mask.
"""

from __future__ import annotations

import torch

from ..front.dims import base_dims
from ..ir import ModelIR
from ..ir.model import StackIR
from ..registry import Registry
from .backends import BuildError


def _context(ir: ModelIR, registry: Registry) -> int | None:
    """The longest input the model takes: what construction builds the positions for."""
    return base_dims(ir, registry).context


def _vocab(ir: ModelIR) -> int:
    vocab = ir.embedding.tokens or ir.params.get("vocab")
    if not isinstance(vocab, int) or isinstance(vocab, bool):
        raise BuildError(f"model '{ir.name}' has no token vocabulary to draw input ids from")
    return vocab


def _takes_padding(stack: StackIR | None, registry: Registry) -> bool:
    """Whether every attention of ``stack`` serves a key padding mask (none declares
    ``"padding"`` in its ``unsupported`` uses)."""
    if stack is None:
        return False
    for layer in stack.layers:
        for comp in (layer.attention, layer.cross_attention):
            if comp is None or not registry.has("attention", comp.kind):
                continue
            if "padding" in getattr(registry.args("attention", comp.kind), "unsupported", {}):
                return False
    return True


def serving_inputs(ir: ModelIR, registry: Registry) -> list[str]:
    """Every keyword input a deployed ``ir`` takes, in call order.

    The model's source (``input_ids``, ``pixel_values`` or ``features``);
    ``attention_mask`` for token and feature inputs whose attention takes key
    padding; ``token_type_ids`` where the embedding has token types; for an
    encoder-decoder, ``decoder_input_ids`` and ``decoder_attention_mask``.
    Images have no mask (every patch is real, as in Hugging Face's ViT).
    """
    emb = ir.embedding
    first = ir.encoder if ir.encoder is not None else ir.decoder
    if getattr(emb, "features", None) is not None:
        names = ["features"]
    elif emb.patches is not None:
        names = ["pixel_values"]
    else:
        names = ["input_ids"]
    if names[0] != "pixel_values" and _takes_padding(first, registry):
        names.append("attention_mask")
    if emb.token_types and names[0] == "input_ids":
        names.append("token_type_ids")
    if ir.is_encoder_decoder:
        names.append("decoder_input_ids")
        if _takes_padding(ir.decoder, registry):
            names.append("decoder_attention_mask")
    return names


def padding_mask(batch: int, seq: int, device: str = "cpu") -> torch.Tensor:
    """``(batch, seq)`` int64 ones, the last row right-padded (its last quarter 0s, at least
    one) when there are two rows or more: a batch that needs the mask."""
    mask = torch.ones(batch, seq, dtype=torch.long)
    if batch > 1 and seq > 1:
        mask[-1, seq - max(1, seq // 4):] = 0
    return mask.to(device)


def example_inputs(ir: ModelIR, registry: Registry, *, batch: int = 1, seq: int | None = None,
                   device: str = "cpu", dtype: str = "float32", seed: int = 0,
                   full: bool = False, decoder_seq: int | None = None,
                   ) -> dict[str, torch.Tensor]:
    """Small random inputs of the right kind for ``ir``, keyed like the model's call.

    ``input_ids`` ``(batch, min(16, context))`` for token models,
    ``pixel_values`` ``(batch, channels, image, image)`` for image models,
    ``features`` ``(batch, seq, N)`` floats for continuous-input models, and
    ``decoder_input_ids`` besides for encoder-decoder models.

    ``full``: every input of :func:`serving_inputs` (masks with a padded row,
    random token types), and decoder inputs ``decoder_seq`` long (default
    three quarters of ``seq``, so the two lengths differ).
    """
    g = torch.Generator().manual_seed(seed)
    ctx = _context(ir, registry)
    seq = seq or (min(16, ctx) if ctx else 16)
    out: dict[str, torch.Tensor] = {}
    patches = ir.embedding.patches
    features = getattr(ir.embedding, "features", None)
    if features is not None:  # continuous inputs (batch, seq, N)
        out["features"] = torch.randn(batch, seq, features, generator=g).to(
            device=device, dtype=getattr(torch, dtype))
    elif patches is not None:
        image = patches.args.get("image", patches.args.get("image_size"))
        channels = patches.args.get("channels", 3)
        if not isinstance(image, int):
            raise BuildError(f"patches '{patches.kind}' has no integer 'image' size to make "
                             "example pixel_values from")
        out["pixel_values"] = torch.randn(batch, channels, image, image, generator=g).to(
            device=device, dtype=getattr(torch, dtype))
    else:
        out["input_ids"] = torch.randint(0, _vocab(ir), (batch, seq), generator=g).to(device)
    if ir.is_encoder_decoder:
        dec = decoder_seq or (max(2, seq * 3 // 4) if full else seq)
        out["decoder_input_ids"] = torch.randint(0, _vocab(ir), (batch, dec),
                                                 generator=g).to(device)
    if not full:
        return out
    names = serving_inputs(ir, registry)
    if "attention_mask" in names:
        out["attention_mask"] = padding_mask(batch, seq, device)
    if "token_type_ids" in names:
        out["token_type_ids"] = torch.randint(0, ir.embedding.token_types, (batch, seq),
                                              generator=g).to(device)
    if "decoder_attention_mask" in names:
        out["decoder_attention_mask"] = padding_mask(batch, out["decoder_input_ids"].shape[1],
                                                     device)
    return {name: out[name] for name in names}
