"""Built-in input embeddings other than token ids (family ``patches``): conv.

Built modules map ``pixel_values (B, C, H, W)`` to ``(B, N, embed_size)``
and expose ``num_patches`` (N).
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .patches import ConvPatchesArgs, PatchEmbedding

__all__ = ["ConvPatchesArgs", "PatchEmbedding"]


@hookimpl
def register_embeddings(register):
    register(name="conv", args=ConvPatchesArgs, build=PatchEmbedding.from_args)
