"""One layer: self-attention, optional cross-attention, optional FFN, each in a residual.

Where the norm sits (``residual``), for each sublayer ``f``:

- ``pre``:      x + drop(f(norm(x)))            (GPT-2, T5, ViT; Xiong et al. 2020)
- ``post``:     norm(x + drop(f(x)))            (Vaswani et al. 2017, BERT)
- ``sandwich``: x + drop(norm_out(f(norm(x))))  (Ding et al. 2021, CogView)
- ``deepnorm``: norm(alpha * x + drop(f(x)))    (Wang et al. 2022, DeepNet; ``alpha``
  from the depth, :mod:`txdsl.runtime.deepnorm`)

Each sublayer has its own norm instances (``attention_norm``,
``cross_attention_norm``, ``ffn_norm``; sandwich adds ``*_norm_out``).

An FFN whose class sets ``takes_state = True`` (a mixture of experts adding
its load-balancing loss) is called ``ffn(x, state=state)`` with the stack's
:class:`~txdsl.sdk.attention.StackState`; others are called ``ffn(x)``.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from torch import Tensor, nn

from ..sdk.attention import AttentionMask, PositionContext, StackState

Residual = Literal["pre", "post", "sandwich", "deepnorm"]
SUBLAYERS = ("attention", "cross_attention", "ffn")


class Layer(nn.Module):
    def __init__(self, *, residual: Residual, attention: nn.Module,
                 cross_attention: nn.Module | None = None, ffn: nn.Module | None = None,
                 norm: Callable[[], nn.Module] | None = None, dropout: float = 0.0,
                 alpha: float = 1.0, uses_position: bool = True):
        """``norm``: a factory giving a fresh norm instance (``None``: no norms);
        ``alpha``: deepnorm's residual scale; ``uses_position``: false for a layer
        whose attention ignores the stack's position (``layer[...] { position = none }``)."""
        super().__init__()
        self.uses_position = uses_position
        if residual not in ("pre", "post", "sandwich", "deepnorm"):
            raise ValueError(f"residual must be pre, post, sandwich or deepnorm, not {residual!r}")
        self.residual, self.alpha = residual, alpha
        subs = {"attention": attention, "cross_attention": cross_attention, "ffn": ffn}
        for name, sub in subs.items():  # registered in reading order: norm, sublayer, norm_out
            has_norm = sub is not None and norm is not None
            setattr(self, f"{name}_norm", norm() if has_norm else None)
            setattr(self, name, sub)
            if residual == "sandwich":
                setattr(self, f"{name}_norm_out", norm() if has_norm else None)
        self.dropout = nn.Dropout(dropout)

    def _residual(self, x: Tensor, name: str, f: Callable[[Tensor], Tensor]) -> Tensor:
        norm = getattr(self, f"{name}_norm")
        if norm is None:
            return x + self.dropout(f(x))
        if self.residual == "pre":
            return x + self.dropout(f(norm(x)))
        if self.residual == "post":
            return norm(x + self.dropout(f(x)))
        if self.residual == "deepnorm":
            return norm(self.alpha * x + self.dropout(f(x)))
        return x + self.dropout(getattr(self, f"{name}_norm_out")(f(norm(x))))

    def forward(self, x: Tensor, *, mask: AttentionMask, position: PositionContext | None = None,
                memory: Tensor | None = None, memory_mask: AttentionMask | None = None,
                cache: Any = None, cross_cache: Any = None,
                state: StackState | None = None) -> Tensor:
        # x: (B, T, d_model); memory: (B, S, d_model), the encoder's output
        if not self.uses_position:
            position = None
        x = self._residual(x, "attention", lambda h: self.attention(
            h, None, mask=mask, position=position, cache=cache, state=state))
        if self.cross_attention is not None:
            if memory is None:
                raise ValueError("a layer with cross-attention needs the encoder's output (memory)")
            cross_mask = memory_mask if memory_mask is not None else AttentionMask(cross=True)
            x = self._residual(x, "cross_attention", lambda h: self.cross_attention(
                h, memory, mask=cross_mask, position=None, cache=cross_cache, state=state))
        if self.ffn is not None:
            ffn = self.ffn
            if getattr(type(ffn), "takes_state", False):
                x = self._residual(x, "ffn", lambda h: ffn(h, state=state))
            else:
                x = self._residual(x, "ffn", ffn)
        return x
