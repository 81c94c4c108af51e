"""Autoregressive decoding: greedy or sampled, with the KV cache.

For a decoder-only model the cache is allocated once for the prompt plus
``max_new_tokens`` (:meth:`TxModel.new_cache
<txdsl.runtime.model.TxModel.new_cache>`, rounded up by :func:`cache_capacity`)
and *planned*: whether any row is padded is decided once on the host, so
without padding every mask is causality alone. The prompt is one forward
computing only the last position's logits (``logits_to_keep=1``; unpadded, on
SDPA's ``is_causal`` path: :func:`_prefill`); then a
decode step (:mod:`txdsl.runtime.decode`, eager or compiled) feeds one token,
its position and its slot per step, tensors of the same shapes updated in
place, so a compiled step is compiled once. Sampling stays on the device;
the only host synchronisation per step is the stop check when
``eos_token_id`` is given.

The arguments are checked before any work (:func:`check_generate`): an
empty prompt, a prompt plus ``max_new_tokens`` longer than the model's
context (unless ``truncate=True``: then decoding stops at the context),
``top_k < 1``, ``top_p`` outside (0, 1] and a temperature <= 0 with sampling
raise ``ValueError``; the prompt's ids are checked by the model's boundary
(:mod:`txdsl.runtime.boundary`).

Left-padded batches work as in Hugging Face: the attention mask marks the
padding, and position ids count only real tokens (``cumsum(mask) - 1``,
padding at 0), so a row's positions don't depend on how much padding
precedes it; every position scheme reads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from ..sdk.cache import StaticKV
from .decode import eager_step

if TYPE_CHECKING:
    from .model import TxModel

CAPACITY_QUANTUM = 64  # cache slots are allocated in multiples of this (see cache_capacity)


def next_token(logits: Tensor, *, do_sample: bool = False, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """``(B, V)`` logits of the last position to ``(B,)`` token ids.

    Sampling applies, in Hugging Face's order: temperature, top-k, then top-p
    (nucleus; Holtzman et al. 2019, https://arxiv.org/abs/1904.09751).
    """
    check_sampling(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
    if not do_sample:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1)  # ascending
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= 1.0 - top_p
        drop[..., -1] = False  # always keep the most likely token
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_sampling(*, do_sample: bool, temperature: float, top_k: int | None,
                   top_p: float | None) -> None:
    """Refuse sampling settings that mean nothing (``top_k``/``top_p`` are checked even
    when greedy: a value out of range is a mistake either way)."""
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k ({top_k!r}) must be an integer >= 1 (None: no top-k filter)")
    if top_p is not None and (not _number(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p ({top_p!r}) must be in (0, 1] (None or 1.0: no nucleus filter)")
    if do_sample and (not _number(temperature) or not temperature > 0):
        raise ValueError(f"temperature ({temperature!r}) must be > 0 when sampling; use "
                         "do_sample=False for greedy decoding")


def check_generate(model: "TxModel", input_ids: object, max_new_tokens: object, *,
                   truncate: bool = False) -> int:
    """Refuse an empty prompt or one that can't grow by ``max_new_tokens`` within the
    context; returns the number of tokens to decode (fewer with ``truncate``)."""
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens ({max_new_tokens!r}) must be an integer >= 0")
    if not isinstance(input_ids, Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.ndim != 2 or input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must be a non-empty (batch, sequence) prompt, got shape "
                         f"{tuple(input_ids.shape)}")
    context = model.context
    if context is None:
        return max_new_tokens
    # a decoder-only model holds the prompt too; an encoder-decoder's decoder a start token
    held = 1 if model.is_encoder_decoder else input_ids.shape[1]
    if held + max_new_tokens <= context:
        return max_new_tokens
    what = "the start token" if model.is_encoder_decoder else f"the prompt ({held} tokens)"
    if truncate and held <= context:
        return context - held
    raise ValueError(f"{what} + max_new_tokens ({max_new_tokens}) = {held + max_new_tokens} "
                     f"tokens, but the model's context is {context}; lower max_new_tokens "
                     "or pass truncate=True to stop at the context")


def position_ids_from_mask(mask: Tensor) -> Tensor:
    """``(B, S)`` 0/1 attention mask to positions counting real tokens only (padding: 0)."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 0)


class _Stop:
    """Rows that produced ``eos_token_id`` continue with ``pad``; all on the device."""

    def __init__(self, B: int, device: Any, eos: int | None, pad: int | None):
        self.eos, self.pad = eos, pad if pad is not None else eos
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)

    def __call__(self, tok: Tensor) -> Tensor:
        if self.eos is None:
            return tok
        tok = torch.where(self.finished, torch.full_like(tok, self.pad or 0), tok)
        self.finished = self.finished | (tok == self.eos)
        return tok

    def all_done(self) -> bool:
        """The stop check: the only host synchronisation of a decoding step (with an eos)."""
        return self.eos is not None and bool(self.finished.all())


@torch.no_grad()
def generate(model: "TxModel", input_ids: Tensor, max_new_tokens: int, *,
             attention_mask: Tensor | None = None, do_sample: bool = False,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             eos_token_id: int | None = None, pad_token_id: int | None = None,
             decoder_start_token_id: int | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True,
             truncate: bool = False, step: Callable[..., Tensor] | None = None) -> Tensor:
    """Decode up to ``max_new_tokens`` tokens after ``input_ids`` ``(B, T)``.

    Returns ``(B, T + new)`` for a decoder-only model (prompt included, as
    Hugging Face does) and ``(B, 1 + new)`` decoder tokens, starting with
    ``decoder_start_token_id``, for an encoder-decoder one. Rows that produced
    ``eos_token_id`` continue with ``pad_token_id`` (default: the eos id); decoding
    stops early once every row has. ``use_cache=False`` re-runs the whole
    sequence each step (for testing the cache). A prompt plus ``max_new_tokens``
    past the model's context is refused; with ``truncate=True`` decoding stops
    at the context instead.

    ``step``: the decoding step of a decoder-only model with a KV cache
    (:mod:`txdsl.runtime.decode`: :func:`~txdsl.runtime.decode.eager_step`, the
    default, or a :class:`~txdsl.runtime.decode.CompiledStep`). The prompt is
    one eager forward computing only the last position's logits; each step
    feeds one token per row. Encoder-decoder models and segment memory
    (Transformer-XL) decode eagerly.
    """
    max_new_tokens = check_generate(model, input_ids, max_new_tokens, truncate=truncate)
    check_sampling(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
    pick = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                generator=generator)
    B = input_ids.shape[0]
    device = input_ids.device
    mask = (attention_mask.long() if attention_mask is not None
            else torch.ones_like(input_ids, dtype=torch.long))
    done = _Stop(B, device, eos_token_id, pad_token_id)
    if use_cache and kv_cache_refusal(model) is not None:
        use_cache = False  # an attention without a KV cache: re-run the sequence per token

    if model.is_encoder_decoder:
        if decoder_start_token_id is None:
            raise ValueError("an encoder-decoder model needs decoder_start_token_id to generate")
        out_ids = torch.full((B, 1), decoder_start_token_id, dtype=torch.long, device=device)
        cache = model.new_cache(B, 1 + max_new_tokens) if use_cache else None
        for i in range(max_new_tokens):
            cached = cache is not None and i > 0
            ids = out_ids[:, -1:] if cached else out_ids
            out = model(input_ids, attention_mask=mask, decoder_input_ids=ids,
                        past_key_values=cache, use_cache=use_cache,
                        cache_position=torch.arange(i, i + 1, device=device)
                        if cached else None, logits_to_keep=1)
            tok = done(next_token(out.logits[:, -1, :], **pick))
            out_ids = torch.cat([out_ids, tok[:, None]], dim=1)
            if done.all_done():
                break
        return out_ids

    if model.decoder is None:
        raise ValueError("generate needs a decoder stack (this model is encoder-only)")
    if any(getattr(layer.attention, "mem_len", 0) for layer in model.decoder.layers):
        # Segment memory (Transformer-XL) instead of a KV cache: the prompt is the first
        # segment, then each new token is one, reading the mems the previous one returned.
        tokens, mems = input_ids, None
        for i in range(max_new_tokens):
            out = model(tokens if i == 0 else tokens[:, -1:],
                        attention_mask=mask if i == 0 else None, mems=mems)
            mems = out.mems
            tok = done(next_token(out.logits[:, -1, :], **pick))
            tokens = torch.cat([tokens, tok[:, None]], dim=1)
            if done.all_done():
                break
        return tokens
    if not use_cache:
        return _generate_uncached(model, input_ids, max_new_tokens, mask, pick, done)
    return _generate_cached(model, input_ids, max_new_tokens, attention_mask, pick, done,
                            step or eager_step)


def kv_cache_refusal(model: "TxModel") -> str | None:
    """Why ``model``'s decoding stack can't use a KV cache (an attention's
    ``no_kv_cache``), or ``None``."""
    stack = model.decoder if model.decoder is not None else None
    for i, layer in enumerate(stack.layers if stack is not None else ()):
        attention = getattr(layer, "attention", None)
        why = getattr(attention, "no_kv_cache", None)
        if why:
            return f"layer {i}: {type(attention).__name__}: {why}"
    return None


def cache_capacity(model: "TxModel", needed: int) -> int:
    """Slots to allocate for ``needed`` positions: rounded up to a multiple of
    :data:`CAPACITY_QUANTUM` (within the context), so a compiled step, whose shapes
    include the capacity, is reused by calls of similar lengths."""
    rounded = -(-needed // CAPACITY_QUANTUM) * CAPACITY_QUANTUM
    return min(rounded, max(model.context, needed)) if model.context else rounded


def _own_ids(model: "TxModel") -> bool:
    """A position module that derives its ids from the mask (RoBERTa's padding offset)."""
    return getattr(model.embedding.position, "padding_idx", None) is not None


def _generate_cached(model: "TxModel", input_ids: Tensor, max_new_tokens: int,
                     attention_mask: Tensor | None, pick: dict, done: _Stop,
                     step: Callable[..., Tensor]) -> Tensor:
    """Prefill once (last position's logits only), then one ``step`` per token over a
    preallocated, planned cache. Host decisions before the loop: padding, greedy."""
    B, T0 = input_ids.shape
    device = input_ids.device
    total = T0 + max_new_tokens
    tokens = torch.empty(B, total, dtype=input_ids.dtype, device=device)
    tokens[:, :T0] = input_ids
    if max_new_tokens == 0:
        return tokens
    # The one host decision about padding: without any, masks are causality alone.
    padded = attention_mask is not None and not bool(attention_mask.bool().all())
    mask = attention_mask.long() if padded else None
    own_ids = _own_ids(model)
    positions = position_ids_from_mask(mask) if padded and not own_ids else None  # (B, T0)
    cache = model.new_cache(B, cache_capacity(model, total))
    cache.stack.planned, cache.stack.padded = True, padded
    out = _prefill(model, input_ids, mask, positions, cache)
    greedy = not pick["do_sample"]
    tok = done(next_token(out.logits[:, -1, :], **pick))  # (B,)
    tokens[:, T0] = tok
    # The step's inputs, updated in place: the same tensors (and shapes) at every step.
    ids = tok[:, None].clone()  # (B, 1)
    step_positions = positions[:, -1:].clone() if positions is not None else None  # (B, 1)
    slot = torch.full((1,), T0, dtype=torch.long, device=device)  # (1,)
    for i in range(1, max_new_tokens):
        if done.all_done():  # the only host sync (and only with an eos)
            return tokens[:, :T0 + i]
        if step_positions is not None:
            step_positions.add_(1)
        result = step(model, ids, step_positions, slot, cache, greedy)
        tok = done(result if greedy else next_token(result, **pick))
        tokens[:, T0 + i] = tok
        ids.copy_(tok[:, None])
        slot.add_(1)
    return tokens


def _prefill(model: "TxModel", input_ids: Tensor, mask: Tensor | None,
             positions: Tensor | None, cache: Any) -> Any:
    """The prompt's forward into ``cache`` (last position's logits only).

    Without padding and with static key/value states only, the prompt runs into a
    cache of exactly ``T`` slots, where the mask is causality alone (SDPA's
    ``is_causal`` path, no ``(T, capacity)`` mask lowered), and its keys, values and
    key metadata are copied into the first ``T`` slots of ``cache``: the same
    numbers as prefilling ``cache`` directly (tested)."""
    B, T0 = input_ids.shape
    stack = cache.stack
    slots = torch.arange(T0, device=input_ids.device)
    direct = (mask is not None or not model.decoder.causal or stack.capacity == T0
              or not all(type(s) is StaticKV for s in stack.self_attention))
    if direct:
        return model(input_ids, attention_mask=mask, position_ids=positions,
                     past_key_values=cache, use_cache=True, cache_position=slots,
                     logits_to_keep=1)
    first = model.new_cache(B, T0)
    first.stack.planned = True
    out = model(input_ids, position_ids=positions, past_key_values=first, use_cache=True,
                cache_position=slots, logits_to_keep=1)
    for mine, theirs in zip(stack.self_attention, first.stack.self_attention):
        mine.k[:, :, :T0].copy_(theirs.k)  # (B, H_kv, T0, hd)
        mine.v[:, :, :T0].copy_(theirs.v)
    stack.key_padding[:, :T0].copy_(first.stack.key_padding)
    stack.key_positions[:, :T0].copy_(first.stack.key_positions)
    stack.length.copy_(first.stack.length)
    return out


def _generate_uncached(model: "TxModel", input_ids: Tensor, max_new_tokens: int,
                       mask: Tensor, pick: dict, done: _Stop) -> Tensor:
    """Re-run the whole sequence at every step (what the cache is tested against)."""
    own_ids = _own_ids(model)
    tokens = input_ids
    for _ in range(max_new_tokens):
        positions = position_ids_from_mask(mask)
        out = model(tokens, attention_mask=mask, position_ids=None if own_ids else positions)
        tok = done(next_token(out.logits[:, -1, :], **pick))
        tokens = torch.cat([tokens, tok[:, None]], dim=1)
        mask = torch.cat([mask, mask.new_ones(tokens.shape[0], 1)], dim=1)
        if done.all_done():
            break
    return tokens
