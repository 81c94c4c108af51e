"""The built model: embedding, stacks and heads, called with Hugging Face's keywords.

Which stack reads ``input_ids``:

- decoder-only: the decoder (causal LM: GPT-2, LLaMA);
- encoder-only: the encoder (BERT, ViT);
- encoder-decoder: ``input_ids`` go through the encoder, ``decoder_input_ids``
  through the decoder, which cross-attends to the encoder's output. Both
  read the one embedding module (Vaswani et al. 2017 share it; so does T5).

Heads read the last stack's output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from .cache import ModelCache
from .embedding import Embedding
from .outputs import TxOutput
from .stack import Stack

if TYPE_CHECKING:
    from ..ir import ModelIR
    from ..back.select import KernelPlan

LOGIT_HEADS = ("lm", "mlm")


class TxModel(nn.Module):
    def __init__(self, *, ir: "ModelIR", plan: "KernelPlan", embedding: Embedding,
                 encoder: Stack | None = None, decoder: Stack | None = None,
                 heads: dict[str, nn.Module] | None = None,
                 head_kinds: dict[str, str] | None = None):
        super().__init__()
        if encoder is None and decoder is None:
            raise ValueError("a model needs an encoder or a decoder stack")
        self.ir, self.plan = ir, plan
        self.embedding = embedding
        self.encoder = encoder
        self.decoder = decoder
        self.heads = nn.ModuleDict(heads or {})
        kinds = head_kinds or {}
        names = list(self.heads.keys())
        first = [n for n in names if kinds.get(n) in LOGIT_HEADS] + names
        self.logits_head: str | None = first[0] if first else None

    @property
    def is_encoder_decoder(self) -> bool:
        return self.encoder is not None and self.decoder is not None

    @property
    def main_stack(self) -> Stack:
        """The stack whose output the heads read."""
        return self.decoder if self.decoder is not None else self.encoder  # type: ignore[return-value]

    def new_cache(self) -> ModelCache:
        stack = self.main_stack
        return ModelCache(len(stack.layers), cross=self.is_encoder_decoder)

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                pixel_values: Tensor | None = None, decoder_input_ids: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None,
                past_key_values: ModelCache | None = None, use_cache: bool = False,
                output_hidden_states: bool = False,
                decoder_position_ids: Tensor | None = None) -> TxOutput:
        """Hugging Face's keywords; ``(B, T)`` ids and 0/1 masks, ``(B, C, H, W)`` pixels.

        With a cache, ``attention_mask`` (or ``decoder_attention_mask``) covers
        the cached positions and the new ones, ``(B, past + T)``, as in HF.
        ``position_ids`` feed a position added to the embeddings (default: the
        position module's own, else ``past .. past+T-1``); positions acting
        inside attention (RoPE, ALiBi, T5) use ``past .. past+T-1``.
        ``past_key_values``: a :class:`ModelCache` from an earlier call, appended
        to in place; ``use_cache`` returns it (a new one when none was given).
        """
        cache = past_key_values
        if use_cache and cache is None:
            cache = self.new_cache()
        past = cache.get_seq_length() if cache is not None else 0
        out = TxOutput()

        if self.is_encoder_decoder:
            if cache is not None and cache.memory is not None:
                memory, memory_mask = cache.memory, cache.memory_mask
            else:
                x = self.embedding(input_ids, token_type_ids=token_type_ids,
                                   position_ids=position_ids, pixel_values=pixel_values,
                                   attention_mask=attention_mask)
                memory, enc_hidden = self.encoder(  # type: ignore[misc]
                    x, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
                memory_mask = attention_mask
                out.encoder_hidden_states = enc_hidden
                if cache is not None:
                    cache.memory, cache.memory_mask = memory, memory_mask
            out.encoder_last_hidden_state = memory
            if decoder_input_ids is None:
                raise ValueError("an encoder-decoder model needs decoder_input_ids")
            y = self.embedding(decoder_input_ids, position_ids=decoder_position_ids,
                               attention_mask=decoder_attention_mask, past_length=past)
            h, hidden = self.decoder(  # type: ignore[misc]
                y, attention_mask=decoder_attention_mask, memory=memory, memory_mask=memory_mask,
                cache=cache.stack if cache is not None else None,
                output_hidden_states=output_hidden_states)
            head_mask = _last(decoder_attention_mask, h.shape[1])
        else:
            x = self.embedding(input_ids, token_type_ids=token_type_ids,
                               position_ids=position_ids, pixel_values=pixel_values,
                               attention_mask=attention_mask, past_length=past)
            if self.embedding.cls_token is not None and attention_mask is not None:
                attention_mask = _with_cls(attention_mask)
            h, hidden = self.main_stack(x, attention_mask=attention_mask,
                                        cache=cache.stack if cache is not None else None,
                                        output_hidden_states=output_hidden_states)
            head_mask = _last(attention_mask, h.shape[1])

        out.last_hidden_state, out.hidden_states = h, hidden
        for name, head in self.heads.items():
            out.heads[name] = head(h, attention_mask=head_mask)
        if self.logits_head is not None:
            out.logits = out.heads[self.logits_head]
        if use_cache:
            out.past_key_values = cache
        return out

    def generate(self, input_ids: Tensor, max_new_tokens: int, *,
                 attention_mask: Tensor | None = None, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 eos_token_id: int | None = None, pad_token_id: int | None = None,
                 decoder_start_token_id: int | None = None, generator: Any = None,
                 use_cache: bool = True) -> Tensor:
        """Decode ``max_new_tokens`` tokens; see :func:`txdsl.runtime.generate.generate`."""
        from .generate import generate

        return generate(self, input_ids, max_new_tokens, attention_mask=attention_mask,
                        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                        eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                        decoder_start_token_id=decoder_start_token_id, generator=generator,
                        use_cache=use_cache)


def _with_cls(attention_mask: Tensor) -> Tensor:
    """The [CLS] vector the embedding prepends is a real position the caller's mask lacks."""
    return nn.functional.pad(attention_mask, (1, 0), value=1)


def _last(mask: Tensor | None, T: int) -> Tensor | None:
    """The mask of this step's ``T`` positions (a mask with a cache covers past ones too)."""
    return mask if mask is None or mask.shape[-1] == T else mask[:, -T:]
