"""Example inputs: small random tensors of the right kind for a model, keyed like its call.

What a backend lowers (traces, exports) the model with, and what ``txdsl
build`` runs once to show the output.
"""

from __future__ import annotations

import torch

from ..front.dims import base_dims
from ..ir import ModelIR
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


def example_inputs(ir: ModelIR, registry: Registry, *, batch: int = 1, seq: int | None = None,
                   device: str = "cpu", dtype: str = "float32",
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """Small random inputs of the right kind for ``ir``, keyed like the model's call.

    ``input_ids`` ``(batch, min(16, context))`` for token models,
    ``pixel_values`` ``(batch, channels, image, image)`` for image models,
    ``features`` ``(batch, seq, N)`` floats for continuous-input models, and
    ``decoder_input_ids`` besides for encoder-decoder models.
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
        out["decoder_input_ids"] = torch.randint(0, _vocab(ir), (batch, seq),
                                                 generator=g).to(device)
    return out
