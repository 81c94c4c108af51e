"""txdsl attention kinds inside Hugging Face models: ``AttentionInterface`` + its mask.

``register_hf_attention("txdsl_local", attention, pattern=window)`` registers
a function with transformers' ``AttentionInterface`` that hands HF's
already-projected ``query (B, H, T, hd)``, ``key``/``value (B, H_kv, S, hd)``
(positions applied, cached keys first) to the txdsl module's
:meth:`~txdsl.sdk.Attention.attend`, and registers the matching mask function
with ``AttentionMaskInterface``: HF's mask (causal or bidirectional, padding,
packed sequences) ANDed with the kind's pattern predicate, which has HF's own
mask-function signature ``(batch, head, q_idx, kv_idx) -> bool``. A HF model
then runs the kind with ``config._attn_implementation = "txdsl_local"``.

**Which kinds qualify**: those whose module overrides only ``attend`` (its
``forward`` is the contract base class's) and whose ``attend`` needs neither
a txdsl position context (HF applies RoPE itself; a score bias such as ALiBi
or T5's is not passed) nor the stack state (RealFormer's scores): ``full``
(every implementation), ``cosine`` (the example plugin), window and other
pattern-restricted sparse kinds. Not: kinds that change the projections or
the decode state (linear and recurrent attention, memory tokens, two-stream),
or that need their own parameters per HF layer unless ``attention`` is given
as a function of the HF attention module returning that layer's txdsl module.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from ..sdk.attention import Attention
from ..sdk.mask import AttentionMask, Pattern
from .mapping import MappingError


def qualifies(attention: Attention) -> str | None:
    """Why ``attention`` can't run inside a HF model, or ``None`` if it can."""
    if not isinstance(attention, Attention):
        return f"{type(attention).__name__} is not a txdsl.sdk.Attention"
    if type(attention).forward is not Attention.forward:
        return (f"{type(attention).__name__} overrides forward (its projections or decode "
                "state differ), not only attend")
    if type(attention).attend is Attention.attend:
        return f"{type(attention).__name__} does not implement attend"
    return None


def _dense_mask(hf_mask: Tensor | None, T: int, S: int) -> AttentionMask:
    """HF's prepared mask ``(B, 1, T, S)`` (bool, or additive float) as a txdsl mask."""
    if hf_mask is None:
        return AttentionMask()
    allowed = hf_mask if hf_mask.dtype == torch.bool else hf_mask == 0  # (B, 1, T, S)
    allowed = allowed[..., -T:, -S:]

    def from_hf(b: Tensor, h: Tensor, slot: Tensor, kv: Tensor) -> Tensor:
        return allowed[b, 0, slot - (S - T), kv]

    B = allowed.shape[0]  # a (B, S) padding of all-real keys makes the mask per row
    real = torch.ones(B, S, dtype=torch.bool, device=allowed.device)
    return AttentionMask(key_padding=real, patterns=(from_hf,))


def register_hf_attention(name: str, attention: Attention | Callable[[Any], Attention], *,
                          pattern: Pattern | None = None) -> None:
    """Register ``attention`` (a txdsl module, or a function of the HF attention module
    returning one) and its mask under ``name`` in transformers' interfaces."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, and_masks, sdpa_mask

    if isinstance(attention, Attention) and (why := qualifies(attention)):
        raise MappingError(f"can't register '{name}' with Hugging Face: {why}")

    def mask(*args: Any, mask_function: Callable | None = None, **kwargs: Any):
        if mask_function is not None and pattern is not None:
            mask_function = and_masks(mask_function, pattern)
        if mask_function is not None:
            kwargs["mask_function"] = mask_function
        kwargs["allow_is_causal_skip"] = False  # attend gets every restriction as data
        kwargs.pop("dtype", None)
        return sdpa_mask(*args, **kwargs)  # (B, 1, T, S) bool, or None: all allowed

    def attend(module: Any, query: Tensor, key: Tensor, value: Tensor,
               attention_mask: Tensor | None, scaling: float | None = None,
               dropout: float = 0.0, **kwargs: Any) -> tuple[Tensor, None]:
        ours = attention if isinstance(attention, Attention) else attention(module)
        if not isinstance(attention, Attention) and (why := qualifies(ours)):
            raise MappingError(f"'{name}': {why}")
        T, S = query.shape[2], key.shape[2]
        y = ours.attend(query, key, value, mask=_dense_mask(attention_mask, T, S),
                        position=None, state=None)  # (B, H, T, hd)
        return y.transpose(1, 2).contiguous(), None  # HF's layout: (B, T, H, hd)

    AttentionInterface.register(name, attend)
    AttentionMaskInterface.register(name, mask)
