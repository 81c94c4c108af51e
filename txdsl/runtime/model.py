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

import torch
from torch import Tensor, nn

from ..sdk.attention import StackState
from .boundary import Limits, check_inputs
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
                 head_kinds: dict[str, str] | None = None, context: int | None = None):
        super().__init__()
        if encoder is None and decoder is None:
            raise ValueError("a model needs an encoder or a decoder stack")
        self.ir, self.plan = ir, plan
        self.context = context  # the longest sequence the model is built for, if known
        self.limits = Limits.from_ir(ir, context=context)  # what its inputs may be (boundary.py)
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

    def _dtype(self) -> torch.dtype | None:
        """The floating dtype the model runs in (what ``pixel_values`` must have)."""
        param = next(self.parameters(), None)
        return param.dtype if param is not None else None

    def new_cache(self, batch: int = 1, capacity: int | None = None, *, device: Any = None,
                  dtype: torch.dtype | None = None) -> ModelCache:
        """A preallocated ``past_key_values`` for ``batch`` rows and ``capacity`` decoded
        positions (default: the model's context, else 1024)."""
        capacity = capacity or self.context or 1024
        return ModelCache(self._stack_cache(self.main_stack, batch, capacity,
                                            cross=self.is_encoder_decoder, device=device,
                                            dtype=dtype))

    def _stack_cache(self, stack: Stack, batch: int, capacity: int, *, cross: bool,
                     device: Any = None, dtype: torch.dtype | None = None):
        """A stack's decode cache, on the model's device and in its dtype unless told."""
        param = next(self.parameters())
        return stack.new_cache(batch, capacity, cross=cross, device=device or param.device,
                               dtype=dtype or param.dtype)

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None, position_ids: Tensor | None = None,
                pixel_values: Tensor | None = None, decoder_input_ids: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None,
                past_key_values: ModelCache | None = None, use_cache: bool = False,
                output_hidden_states: bool = False,
                decoder_position_ids: Tensor | None = None, document_ids: Tensor | None = None,
                cache_position: Tensor | None = None,
                task_ids: Tensor | None = None,
                global_attention_mask: Tensor | None = None,
                mems: tuple[Tensor, ...] | list[Tensor] | None = None,
                perm_mask: Tensor | None = None,
                target_mapping: Tensor | None = None,
                features: Tensor | None = None,
                logits_to_keep: int | None = None) -> TxOutput:
        """Hugging Face's keywords; ``(B, T)`` ids and 0/1 masks, ``(B, C, H, W)`` pixels.

        Every input is checked first (:mod:`txdsl.runtime.boundary`): a bad
        one is a ``TypeError``/``ValueError`` naming it, before any layer runs.

        - ``attention_mask`` ``(B, T)``, 1 for real tokens; with a cache it may
          also cover the cached positions, ``(B, past + T)``, as in HF (its last
          ``T`` columns are this step's).
        - ``position_ids`` ``(B, T)``: every position scheme reads them (added
          ones, RoPE, ALiBi, T5), per row. Default: after what the cache holds
          (an added position may define its own, as RoBERTa's padding offset).
        - ``document_ids`` ``(B, T)``: packed sequences; a token attends only to
          its own document and positions restart at each document (no cache).
        - ``past_key_values``: a :class:`ModelCache` (:meth:`new_cache`, or the
          one a call with ``use_cache`` returned), written in place;
          ``cache_position`` ``(T,)``: the slots this step writes (default:
          after what the cache holds; pass it to compile a decode step once).
        - ``task_ids`` ``(B,)``: each row's task, for task-conditioned components
          (``task_adapter`` attention); they read it as ``StackState.inputs["task_ids"]``.
        - ``global_attention_mask`` ``(B, T)``, 1 for global positions (Longformer's
          input): sparse attention kinds read it (``StackState.inputs``).
        - ``mems``: segment memory (Transformer-XL, XLNet): the ``mems`` a previous
          call returned, one ``(B, M, d_model)`` per layer (batch first; Hugging
          Face's XLNet holds them ``(M, B, d_model)``); the output's ``mems`` are
          the next segment's (``mem_len`` positions, gradient stopped).
        - ``perm_mask`` ``(B, T, T)``, ``target_mapping`` ``(B, P, T)`` (XLNet, as
          in Hugging Face): 1 where query i may not see key j; the one-hot
          positions of the P query-stream predictions (logits are then
          ``(B, P, vocab)``). ``token_type_ids`` are XLNet's segment ids.
        - ``features`` ``(B, T, N)`` floats: continuous inputs, for a model whose
          embedding declares ``features = N`` (time series, sets).
        - ``logits_to_keep``: the logits head reads only the last ``logits_to_keep``
          positions (generation's prefill needs the last one), applied before the head
          so the others' vocabulary projections are never computed; ``None`` or 0:
          every position (as Hugging Face's argument). Other heads and
          ``last_hidden_state`` still see every position.
        """
        check_inputs(self.limits, dict(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, pixel_values=pixel_values,
            decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_attention_mask,
            past_key_values=past_key_values, decoder_position_ids=decoder_position_ids,
            document_ids=document_ids, cache_position=cache_position,
            task_ids=task_ids, global_attention_mask=global_attention_mask, features=features),
            dtype=self._dtype())
        if mems is not None:
            _check_mems(mems, input_ids, self.ir.d_model)
        if logits_to_keep is not None and (not isinstance(logits_to_keep, int)
                                           or isinstance(logits_to_keep, bool)
                                           or logits_to_keep < 0):
            raise ValueError(f"logits_to_keep ({logits_to_keep!r}) must be an integer >= 0 "
                             "(0 or None: logits at every position)")
        cache = past_key_values
        if use_cache and cache is None:
            cache = ModelCache()
        if document_ids is not None and cache is not None:
            raise ValueError("document_ids (packed sequences) can't be used with a cache")
        memory = enc_hidden = new_mems = None
        # Model inputs components read (StackState.inputs) and the auxiliary losses they add,
        # shared by the stacks; each stack gets its own StackState (scores don't cross stacks).
        component_inputs: dict[str, Tensor] = {}
        for name, value in (("task_ids", task_ids),
                            ("global_attention_mask", global_attention_mask),
                            ("perm_mask", perm_mask), ("target_mapping", target_mapping),
                            ("token_type_ids", token_type_ids)):
            if value is not None:
                component_inputs[name] = value
        aux_losses: dict[str, Tensor] = {}

        def state() -> StackState:
            return StackState(inputs=component_inputs, aux_losses=aux_losses)

        if self.is_encoder_decoder:
            if cache is not None and cache.memory is not None:
                memory, memory_mask = cache.memory, cache.memory_mask
            else:
                memory, enc_hidden = self._encode(input_ids, attention_mask, token_type_ids,
                                                  position_ids, pixel_values, document_ids,
                                                  output_hidden_states, state(), features)
                memory_mask = attention_mask
                if cache is not None:
                    cache.memory, cache.memory_mask = memory, memory_mask
            if decoder_input_ids is None:
                raise ValueError("an encoder-decoder model needs decoder_input_ids")
            h, hidden, mask = self._run(self.decoder, decoder_input_ids, decoder_attention_mask,
                                        None, decoder_position_ids, None, None, cache,
                                        cache_position, output_hidden_states, state(),
                                        memory=memory, memory_mask=memory_mask)
        else:
            main = state()
            main.mems = tuple(mems) if mems is not None else None
            h, hidden, mask = self._run(self.main_stack, input_ids, attention_mask,
                                        token_type_ids, position_ids, pixel_values, document_ids,
                                        cache, cache_position, output_hidden_states, main,
                                        features=features)
            new_mems = tuple(main.new_mems) or None

        heads = {}
        for name, head in self.heads.items():
            keep = logits_to_keep if name == self.logits_head else None
            heads[name] = head(_kept(h, keep), attention_mask=_kept(mask, keep))
        # One constructor call (no attribute writes after it): a compiled model with a graph
        # break would otherwise lose them.
        return TxOutput(logits=heads[self.logits_head] if self.logits_head is not None else None,
                        heads=heads, last_hidden_state=h, hidden_states=hidden,
                        past_key_values=cache if use_cache else None,
                        encoder_last_hidden_state=memory, encoder_hidden_states=enc_hidden,
                        aux_loss=sum(aux_losses.values()) if aux_losses else None,
                        aux_losses=aux_losses, mems=new_mems)

    def _encode(self, input_ids, attention_mask, token_type_ids, position_ids, pixel_values,
                document_ids, output_hidden_states, state, features=None):
        h, hidden, _ = self._run(self.encoder, input_ids, attention_mask, token_type_ids,
                                 position_ids, pixel_values, document_ids, None, None,
                                 output_hidden_states, state, features=features)
        return h, hidden

    def _run(self, stack: Stack, ids, attention_mask, token_type_ids, position_ids,
             pixel_values, document_ids, cache, cache_position, output_hidden_states, state,
             memory=None, memory_mask=None, features=None):
        """Embed, then run ``stack``; returns its output, hidden states and this step's mask."""
        if position_ids is None and document_ids is not None:
            position_ids = positions_in_documents(document_ids)
        stack_cache, slots = None, None
        if cache is not None:
            source = ids if ids is not None else pixel_values if pixel_values is not None \
                else features
            B, T = source.shape[:2]
            if cache.stack is None:  # allocated at the first step: it needs the batch size
                capacity = cache.capacity or max(self.context or 0, T)
                cache.stack = self._stack_cache(stack, B, capacity, cross=memory is not None)
            stack_cache = cache.stack
            slots = cache_position if cache_position is not None else stack_cache.slots(T)
        x = self.embedding(ids, token_type_ids=token_type_ids, position_ids=position_ids,
                           pixel_values=pixel_values, attention_mask=attention_mask,
                           past_length=slots[0] if slots is not None else 0,
                           features=features)
        if self.embedding.cls_token is not None and attention_mask is not None:
            attention_mask = _with_cls(attention_mask)
        T = x.shape[1]
        if position_ids is None:
            base = torch.arange(T, device=x.device)
            position_ids = (slots if slots is not None else base)[None]  # (1, T)
        h, hidden = stack(x, positions=position_ids, attention_mask=attention_mask,
                          documents=document_ids, memory=memory, memory_mask=memory_mask,
                          cache=stack_cache, cache_position=slots,
                          output_hidden_states=output_hidden_states, state=state)
        return h, hidden, _last(attention_mask, h.shape[1])

    def generate(self, input_ids: Tensor, max_new_tokens: int, *,
                 attention_mask: Tensor | None = None, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 eos_token_id: int | None = None, pad_token_id: int | None = None,
                 decoder_start_token_id: int | None = None, generator: Any = None,
                 use_cache: bool = True, truncate: bool = False) -> Tensor:
        """Decode ``max_new_tokens`` tokens; see :func:`txdsl.runtime.generate.generate`."""
        from .generate import generate

        return generate(self, input_ids, max_new_tokens, attention_mask=attention_mask,
                        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                        eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                        decoder_start_token_id=decoder_start_token_id, generator=generator,
                        use_cache=use_cache, truncate=truncate)


def _check_mems(mems: Any, input_ids: Tensor | None, d_model: int) -> None:
    """``mems``: a tuple or list of ``(B, M, d_model)`` tensors, B the batch's rows."""
    if not isinstance(mems, (tuple, list)) or not all(isinstance(m, Tensor) for m in mems):
        raise TypeError("mems must be the tuple of tensors a previous call returned (out.mems)")
    B = input_ids.shape[0] if input_ids is not None else None
    for i, m in enumerate(mems):
        if m.dim() != 3 or m.shape[-1] != d_model or (B is not None and m.shape[0] != B):
            raise ValueError(f"mems[{i}] must be (batch {B}, memory, d_model {d_model}), "
                             f"got {tuple(m.shape)}")


def _kept(x: Tensor | None, keep: int | None) -> Tensor | None:
    """``x`` ``(B, T, ...)``, or its last ``keep`` positions (``logits_to_keep``)."""
    return x if not keep or x is None else x[:, -keep:]


def _with_cls(attention_mask: Tensor) -> Tensor:
    """The [CLS] vector the embedding prepends is a real position the caller's mask lacks."""
    return nn.functional.pad(attention_mask, (1, 0), value=1)


def _last(mask: Tensor | None, T: int) -> Tensor | None:
    """The mask of this step's ``T`` positions (a mask with a cache covers past ones too)."""
    return mask if mask is None or mask.shape[-1] == T else mask[:, -T:]


def positions_in_documents(document_ids: Tensor) -> Tensor:
    """``(B, T)`` document ids of packed rows -> each token's position within its document."""
    B, T = document_ids.shape
    index = torch.arange(T, device=document_ids.device).expand(B, T)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    first = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    return index - first
