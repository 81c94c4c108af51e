"""The constant-size decode state of linearized attention.

Causal linear attention is a recurrence (Katharopoulos et al. 2020,
"Transformers are RNNs"): all a decoding step needs of the past is

- ``S`` ``(B, H, F, d_v)``: the sum of ``phi(k_s) v_s^T`` over past keys,
- ``z`` ``(B, H, F)``: the normaliser, the sum of ``phi(k_s)``,

``F`` the feature dimension (``head_dim`` for ``linear``, ``features`` for
``performer``, ``2 * head_dim`` for ``cosformer``). Its size doesn't depend
on how many tokens were decoded, so ``grow`` has nothing to do: a step at
token 10,000 costs what a step at token 10 does. It implements
:class:`txdsl.sdk.cache.DecodeState`; updates are in place (``copy_``), so
the tensors keep their shapes and a compiled step compiles once.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RecurrentState:
    """``S`` and ``z`` of one layer, for ``batch`` rows and ``heads`` heads."""

    def __init__(self, batch: int, heads: int, features: int, v_dim: int, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        self.S = torch.zeros(batch, heads, features, v_dim, device=device, dtype=dtype)
        self.z = torch.zeros(batch, heads, features, device=device, dtype=dtype)

    def read(self) -> tuple[Tensor, Tensor]:
        return self.S, self.z

    def write(self, S: Tensor, z: Tensor) -> None:
        self.S.copy_(S)
        self.z.copy_(z)

    def reorder(self, index: Tensor) -> None:
        self.S, self.z = self.S[index], self.z[index]

    def grow(self, capacity: int) -> None:
        pass  # constant size: nothing depends on the number of tokens

    def nbytes(self) -> int:
        return self.S.nbytes + self.z.nbytes
