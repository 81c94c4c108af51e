"""Helpers the low-rank and prototype kinds share: key validity and the usual base checks."""

from __future__ import annotations

import torch
from torch import Tensor

from txdsl.sdk.mask import AttentionMask

# Uses no kind of this package serves, with the reason a user reads.
NO_DECODE = "it keeps no per-token decode state (its summary of the keys changes with every new key)"


def key_weights(mask: AttentionMask, B: int, S: int, dtype: torch.dtype,
                device: torch.device) -> Tensor | None:
    """``(B, 1, S, 1)`` 1.0 for real keys, 0.0 for padded ones; ``None`` without padding."""
    if mask.key_padding is None:
        return None
    return mask.key_padding.to(device=device, dtype=dtype).reshape(-1, 1, S, 1).expand(B, 1, S, 1)


def masked_mean(x: Tensor, weights: Tensor | None, dim: int = -2) -> Tensor:
    """The mean of ``x`` over ``dim`` counting only rows with weight 1 (0 if there are none)."""
    if weights is None:
        return x.mean(dim=dim, keepdim=True)
    total = (x * weights).sum(dim=dim, keepdim=True)
    return total / weights.sum(dim=dim, keepdim=True).clamp(min=1.0)


def fairseq_init(attention: torch.nn.Module, inputs: tuple[str, ...],
                 outputs: tuple[str, ...]) -> None:
    """The start fairseq's multi-head attention gives its projections, which the
    Linformer and Luna authors' code keeps (``reset_parameters`` there): Xavier-uniform
    with gain ``1/sqrt 2`` on the input projections ``inputs`` (q, k, v, ...), gain 1 on
    the output projections ``outputs``, biases 0. Only ``nn.Linear`` modules are touched
    (a projection another plugin swapped in keeps its own)."""
    with torch.no_grad():
        for names, gain in ((inputs, 2 ** -0.5), (outputs, 1.0)):
            for name in names:
                lin = getattr(attention, name)
                if isinstance(lin, torch.nn.Linear):
                    torch.nn.init.xavier_uniform_(lin.weight, gain=gain)
                    if lin.bias is not None:
                        lin.bias.zero_()


def torch_default_init(attention: torch.nn.Module, names: tuple[str, ...]) -> None:
    """PyTorch's own ``nn.Linear`` start (``reset_parameters``: Kaiming-uniform, weights
    and biases ``U(+-1/sqrt fan_in)``) for the projections ``names``, as code that builds
    plain ``nn.Linear`` layers gets (the Set Transformer's)."""
    for name in names:
        lin = getattr(attention, name)
        if isinstance(lin, torch.nn.Linear):
            lin.reset_parameters()
