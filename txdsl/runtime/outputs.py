"""What a built model's forward returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from torch import Tensor

from .cache import ModelCache


@dataclass
class TxOutput:
    """The outputs of :meth:`TxModel.forward <txdsl.runtime.model.TxModel.forward>`.

    - ``logits``: the first ``lm``/``mlm`` head's output, else the first head's,
      else ``None``;
    - ``heads``: every head's output by head name;
    - ``last_hidden_state``: ``(B, T, d_model)`` of the stack the heads read
      (the decoder's in an encoder-decoder model), after its final norm;
    - ``hidden_states``: on request, that stack's layer inputs and its output
      (``layers + 1`` tensors, as Hugging Face returns them);
    - ``past_key_values``: the cache, when ``use_cache``;
    - ``encoder_last_hidden_state`` / ``encoder_hidden_states``: the encoder's,
      in an encoder-decoder model;
    - ``aux_losses``: the auxiliary losses components added during this forward,
      by name (a mixture of experts' load balancing, a ponder cost, an adaptive
      span's regulariser; see :meth:`StackState.add_loss
      <txdsl.sdk.attention.StackState.add_loss>`), summed over layers and stacks;
      ``aux_loss``: their sum (``None`` when there are none). Add it, scaled as
      the paper says, to the training loss;
    - ``mems``: the next segment's memory (Transformer-XL, XLNet), one
      ``(B, mem_len, d_model)`` per layer that keeps one; pass it back as ``mems``.
    """

    logits: Tensor | None = None
    heads: dict[str, Tensor] = field(default_factory=dict)
    last_hidden_state: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    past_key_values: ModelCache | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: tuple[Tensor, ...] | None = None
    aux_loss: Tensor | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
    mems: tuple[Tensor, ...] | None = None


# A pytree node, so torch.export / AOTInductor can flatten and rebuild the output.
torch.export.register_dataclass(TxOutput, serialized_type_name="txdsl.runtime.TxOutput")
