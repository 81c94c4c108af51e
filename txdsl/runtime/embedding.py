"""The input embedding: token ids or image patches to ``(B, T, d_model)`` vectors.

    x = tokens(input_ids) [* sqrt(E)]          or  patches(pixel_values)
                                               or  features(features): Linear(N, E)
    x = [cls; x]                                 (ViT: a learned vector first)
    x = x + position(position_ids) + token_types(token_type_ids)
    x = dropout(norm(x))                         (width E)
    x = projection(x)                            (Linear(E, d_model) when E != d_model)

The projection comes last, after norm and dropout, as in ALBERT and ELECTRA
(factorized embeddings, Lan et al. 2019, https://arxiv.org/abs/1909.11942).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Embedding(nn.Module):
    def __init__(self, *, size: int, d_model: int, tokens: nn.Embedding | None = None,
                 patches: nn.Module | None = None, features: nn.Module | None = None,
                 cls_token: bool = False,
                 position: nn.Module | None = None, token_types: nn.Embedding | None = None,
                 norm: nn.Module | None = None, dropout: float = 0.0, scale: bool = False):
        super().__init__()
        if tokens is None and patches is None and features is None:
            raise ValueError("an embedding needs token ids (tokens) or image patches (patches)")
        self.size, self.d_model = size, d_model
        self.tokens = tokens
        self.patches = patches
        self.features = features  # continuous inputs (B, T, N) -> (B, T, E)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, size)) if cls_token else None
        self.position = position
        self.token_types = token_types
        self.norm = norm
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(size) if scale else None
        self.projection = nn.Linear(size, d_model) if size != d_model else None

    def position_ids(self, attention_mask: Tensor | None, T: int, past: int | Tensor,
                     device: torch.device, input_ids: Tensor | None = None) -> Tensor:
        """Position ids ``(B|1, T)`` of this step's tokens, when the caller gave none.

        A position module may define them itself (RoBERTa's, offset by the
        padding index, counts only real tokens: those whose id isn't the padding
        index, as Hugging Face); otherwise ``past .. past+T``.
        """
        own = getattr(self.position, "position_ids", None)
        if own is not None:
            if getattr(self.position, "padding_idx", None) is not None:
                return own(attention_mask, T, past, input_ids=input_ids)
            return own(attention_mask, T, past)
        return (torch.arange(T, device=device) + past)[None]  # (1, T)

    def forward(self, input_ids: Tensor | None = None, *, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None, pixel_values: Tensor | None = None,
                attention_mask: Tensor | None = None, past_length: int | Tensor = 0,
                features: Tensor | None = None) -> Tensor:
        if features is not None:
            if self.features is None:
                raise ValueError("this model takes token ids or pixel_values, not features")
            x = self.features(features)  # (B, T, E)
        elif pixel_values is not None:
            if self.patches is None:
                raise ValueError("this model takes token ids, not pixel_values")
            x = self.patches(pixel_values)  # (B, N, E)
        elif input_ids is not None:
            if self.tokens is None:
                raise ValueError("this model takes pixel_values, not input_ids")
            x = self.tokens(input_ids)  # (B, T, E)
        else:
            raise ValueError("give input_ids or pixel_values")
        if self.scale is not None:
            x = x * self.scale
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, E)
        T = x.shape[1]
        if self.position is not None:
            if position_ids is None:
                ids = input_ids if self.cls_token is None and pixel_values is None else None
                position_ids = self.position_ids(attention_mask, T, past_length, x.device,
                                                 input_ids=ids)
            x = x + self.position(position_ids).to(x.dtype)  # (B|1, T, E); sinusoidal is float32
        if self.token_types is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
            x = x + self.token_types(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        x = self.dropout(x)
        if self.projection is not None:
            x = self.projection(x)  # (B, T, d_model)
        return x
