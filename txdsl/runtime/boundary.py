"""The model boundary: every keyword input checked before any model code runs.

A built model (eager, compiled by Inductor, or an AOTInductor package) must
refuse a bad input with a ``TypeError`` (not a tensor, a wrong dtype) or a
``ValueError`` (a wrong rank, shapes that disagree, a value out of range)
that names the argument, what was expected and what was given; never with a
bare ``IndexError`` from deep inside, and never by aborting the process (a
compiled kernel's index check throws where it can't be caught: SIGABRT).

One function per concern, run in this order by :func:`check_inputs`:

- :func:`check_types`: tensors, dtypes, one device;
- :func:`check_roles`: which inputs this model takes (token ids or pixels,
  encoder-decoder or not, token types);
- :func:`check_shapes`: ranks, non-empty batches and sequences, shapes that
  agree with each other, sequences no longer than the context;
- :func:`check_cache`: ``past_key_values`` and ``cache_position``;
- :func:`check_values`: ids within the vocabulary, masks of 0/1, token types,
  positions within the position table, cache slots within the context. These
  read the data: all conditions are reduced on the device and read back with
  one synchronisation per call. They are skipped while compiling (the shape
  and dtype checks trace fine and keep ``fullgraph``); while exporting,
  :func:`check_in_graph` puts the id range checks into the exported program
  itself (``torch._check``), so a bare ``model.pt2`` refuses them too.

What a model allows comes from its IR (:class:`Limits`), so a self-contained
package checks its inputs without the plugins.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

ID_INPUTS = ("input_ids", "decoder_input_ids")
INTEGER_INPUTS = ID_INPUTS + ("token_type_ids", "position_ids", "decoder_position_ids",
                              "document_ids", "cache_position")
INTEGER_INPUTS += ("task_ids",)  # (B,) each row's task (task-conditioned components)
MASK_INPUTS = ("attention_mask", "decoder_attention_mask", "global_attention_mask")
TENSOR_INPUTS = INTEGER_INPUTS + MASK_INPUTS + ("pixel_values", "features")
ID_DTYPES = (torch.int64, torch.int32)


SEGMENT_ATTENTION = ("two_stream",)  # attention kinds that read token_type_ids as segments


@dataclass(frozen=True)
class Limits:
    """What a model's inputs may be, from its IR alone (plain data, no plugins)."""

    vocab: int | None  # token ids 0 .. vocab-1; None: the model takes pixel_values
    context: int | None  # the longest sequence (and the last cache slot + 1)
    position_rows: int | None  # rows of a position table added to the embeddings
    token_types: int  # 0: no token type embedding
    image: tuple[int, int] | None  # (channels, side) of pixel_values
    patches: int | None  # tokens an image becomes, before a [CLS] vector
    cls_token: bool
    encoder_decoder: bool
    tasks: int | None = None  # task_ids 0 .. tasks-1: the largest `tasks` argument of a component
    segments: bool = False  # token_type_ids are segment ids the attention reads (XLNet)
    features: int | None = None  # width N of continuous (B, T, N) float inputs, if taken

    @property
    def source(self) -> str:
        """The keyword of the model's input: token ids, pixels or continuous features."""
        if self.vocab is not None:
            return "input_ids"
        return "features" if self.features is not None else "pixel_values"

    @classmethod
    def from_ir(cls, ir: Any, *, context: int | None = None) -> "Limits":
        """``context`` as the builder computed it; by default the IR's ``context``
        parameter, else the added position's ``max_len`` less a padding offset."""
        emb = ir.embedding
        pos = emb.position
        rows = pos.args.get("max_len") if pos is not None else None
        rows = rows if _is_int(rows) else None
        if context is None:
            context = ir.params.get("context")
            if not _is_int(context) and rows is not None:
                pad = pos.args.get("padding_idx")
                context = rows - (pad + 1 if _is_int(pad) else 0)
        image = patches = None
        if emb.patches is not None:
            side, size = emb.patches.args.get("image"), emb.patches.args.get("size")
            image = (emb.patches.args.get("channels", 3), side)
            patches = (side // size) ** 2 if _is_int(side) and _is_int(size) else None
        return cls(vocab=emb.tokens, context=context if _is_int(context) and context > 0 else None,
                   position_rows=rows, token_types=emb.token_types, image=image,
                   patches=patches, cls_token=emb.cls_token,
                   encoder_decoder=ir.is_encoder_decoder, tasks=_tasks(ir),
                   features=getattr(emb, "features", None),
                   segments=any(layer.attention.kind in SEGMENT_ATTENTION
                                for stack in (ir.encoder, ir.decoder) if stack is not None
                                for layer in stack.layers))


def _tasks(ir: Any) -> int | None:
    """The tasks a model's task-conditioned components know (their ``tasks`` argument)."""
    counts = [c.args.get("tasks") for stack in ir.stacks for layer in stack.layers
              for c in (layer.attention, layer.cross_attention, layer.ffn) if c is not None]
    counts = [n for n in counts if _is_int(n)]
    return max(counts) if counts else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def bind(forward: Callable, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A call's positional and keyword arguments by parameter name (``TypeError`` as Python's)."""
    bound = inspect.signature(forward).bind(*args, **kwargs)
    return dict(bound.arguments)


def check_inputs(limits: Limits, inputs: Mapping[str, Any], *, dtype: torch.dtype | None = None,
                 cache_grows: bool = True) -> None:
    """Refuse bad ``inputs`` (a model's keyword arguments) with a ``TypeError``/``ValueError``.

    ``dtype``: the model's floating dtype (``pixel_values`` must have it);
    ``cache_grows``: ``False`` for compiled code, whose cache can't grow, so
    ``cache_position`` must stay within the cache's capacity.
    """
    given = {k: v for k, v in inputs.items() if v is not None}
    check_types(given, dtype)
    check_roles(limits, given)
    check_shapes(limits, given)
    check_cache(limits, given)
    if torch.compiler.is_exporting():
        check_in_graph(limits, given)
    elif not torch.compiler.is_compiling() and not _on_meta(given):
        check_values(limits, given, cache_grows=cache_grows)


def _on_meta(given: Mapping[str, Any]) -> bool:
    return any(isinstance(v, Tensor) and v.device.type == "meta" for v in given.values())


def check_types(given: Mapping[str, Any], dtype: torch.dtype | None = None) -> None:
    """Tensors where tensors go, of a dtype the model takes, all on one device."""
    devices: dict[str, torch.device] = {}
    for name in TENSOR_INPUTS:
        if name not in given:
            continue
        value = given[name]
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if name in INTEGER_INPUTS and value.dtype not in ID_DTYPES:
            raise TypeError(f"{name} must be an integer tensor (torch.int64 or torch.int32), "
                            f"got {value.dtype}")
        if name in MASK_INPUTS and value.dtype.is_complex:
            raise TypeError(f"{name} must hold 0/1 (bool, integer or float), got {value.dtype}")
        if name in ("pixel_values", "features"):
            if not value.dtype.is_floating_point:
                raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
            if dtype is not None and value.dtype != dtype:
                raise TypeError(f"{name} has dtype {value.dtype}, but the model runs in "
                                f"{dtype}; convert it with .to({dtype})")
        devices[name] = value.device
    if devices:
        first, where = next(iter(devices.items()))
        for name, device in devices.items():
            if device != where:
                raise ValueError(f"{name} is on {device}, but {first} is on {where}: put every "
                                 "input on one device")


def check_roles(limits: Limits, given: Mapping[str, Any]) -> None:
    """Only inputs this model reads: ids or pixels, decoder inputs, token types."""
    if limits.features is not None and "input_ids" in given:
        raise ValueError(f"this model takes features (continuous (batch, sequence, "
                         f"{limits.features}) floats), not input_ids")
    if limits.features is None and "features" in given:
        raise ValueError(f"this model takes {limits.source}, not features (its embedding "
                         "declares no `features = N`)")
    if limits.features is not None and "pixel_values" in given:
        raise ValueError("this model takes features (continuous inputs), not pixel_values")
    if limits.vocab is None and "input_ids" in given:
        raise ValueError("this model takes pixel_values (images), not input_ids")
    if limits.vocab is not None and "pixel_values" in given:
        raise ValueError("this model takes input_ids (token ids), not pixel_values")
    if not limits.encoder_decoder:
        for name in ("decoder_input_ids", "decoder_attention_mask", "decoder_position_ids"):
            if name in given:
                raise ValueError(f"{name} is for encoder-decoder models; this model has one "
                                 "stack: pass input_ids, attention_mask, position_ids")
    if "token_type_ids" in given and limits.token_types == 0 and not limits.segments:
        raise ValueError("token_type_ids given, but the model has no token type embedding "
                         "(its spec sets no embedding token_types)")
    cache = given.get("past_key_values")
    if "document_ids" in given and cache is not None:
        raise ValueError("document_ids (packed sequences) can't be used with a cache "
                         "(past_key_values)")
    if "task_ids" in given and limits.tasks is None:
        raise ValueError("task_ids given, but no component of this model is conditioned on a "
                         "task (e.g. attention task_adapter(tasks: ...))")
    if "cache_position" in given and cache is None:
        raise ValueError("cache_position given without past_key_values: it names cache slots")
    encoder_done = cache is not None and getattr(cache, "memory", None) is not None
    source = limits.source
    if source not in given and not encoder_done:
        raise ValueError(f"give {source}: the model's input")
    if limits.encoder_decoder and "decoder_input_ids" not in given:
        raise ValueError("an encoder-decoder model needs decoder_input_ids")


def _rank(given: Mapping[str, Any], name: str, rank: int, what: str) -> None:
    value = given.get(name)
    if value is not None and value.ndim != rank:
        raise ValueError(f"{name} must have {rank} dimensions {what}, got shape "
                         f"{tuple(value.shape)}")


def _sequence(limits: Limits, given: Mapping[str, Any], ids: str, mask: str, positions: str,
              extra: tuple[str, ...] = ()) -> None:
    """One sequence: its ids (or pixels), mask, positions and per-token extras agree."""
    cached = given.get("past_key_values") is not None
    if ids == "features":
        x = given.get(ids)
        if x is None:
            return
        _rank(given, ids, 3, "(batch, sequence, features)")
        B, T, N = x.shape
        T_pos = T
        if N != limits.features:
            raise ValueError(f"features has {N} values per position, but the model takes "
                             f"{limits.features} (its embedding's `features = {limits.features}`)")
        if T < 1:
            raise ValueError(f"features has shape {tuple(x.shape)}: an empty sequence (T = 0)")
        if limits.context is not None and T > limits.context:
            raise ValueError(f"features has {T} positions per row, but the model's context is "
                             f"{limits.context}")
    elif ids == "pixel_values":
        x = given.get(ids)
        if x is None:
            return
        _rank(given, ids, 4, "(batch, channels, height, width)")
        B = x.shape[0]
        if limits.image is not None and tuple(x.shape[1:]) != (limits.image[0],) + (limits.image[1],) * 2:
            c, side = limits.image
            raise ValueError(f"pixel_values must be (batch, {c}, {side}, {side}), got shape "
                             f"{tuple(x.shape)}")
        T = limits.patches  # the mask covers the patches, positions also the [CLS] vector
        T_pos = T + 1 if T is not None and limits.cls_token else T
    else:
        x = given.get(ids)
        if x is None:
            return
        _rank(given, ids, 2, "(batch, sequence)")
        B, T = x.shape
        T_pos = T
        if T < 1:
            raise ValueError(f"{ids} has shape {tuple(x.shape)}: an empty sequence (T = 0); "
                             "give at least one token")
        if limits.context is not None and T > limits.context:
            raise ValueError(f"{ids} has {T} tokens per row, but the model's context is "
                             f"{limits.context}")
    if B < 1:
        raise ValueError(f"{ids} has shape {tuple(x.shape)}: an empty batch; give at least one row")
    for name in extra:
        _rank(given, name, 2, "(batch, sequence)")
        if name in given and tuple(given[name].shape) != (B, T):
            raise ValueError(f"{name} must have the shape of {ids}, ({B}, {T}), got "
                             f"{tuple(given[name].shape)}")
    if positions in given:
        _rank(given, positions, 2, "(batch, sequence)")
        p = given[positions]
        if p.shape[0] not in (1, B) or (T_pos is not None and p.shape[1] != T_pos):
            raise ValueError(f"{positions} must be ({B}, {T_pos}) (or (1, {T_pos})) to match "
                             f"{ids}, got {tuple(p.shape)}")
    if mask in given:
        _rank(given, mask, 2, "(batch, sequence)")
        m = given[mask]
        width_ok = T is None or m.shape[1] == T or (cached and m.shape[1] > T)
        if m.shape[0] != B or not width_ok:
            also = f" (or ({B}, past + {T}) with a cache)" if cached else ""
            raise ValueError(f"{mask} must be ({B}, {T}){also} to match {ids}, got "
                             f"{tuple(m.shape)}")


def check_shapes(limits: Limits, given: Mapping[str, Any]) -> None:
    """Ranks, non-empty inputs, one batch size, per-token inputs as long as their ids."""
    source = limits.source
    _sequence(limits, given, source, "attention_mask", "position_ids",
              ("token_type_ids", "document_ids", "global_attention_mask"))
    _sequence(limits, given, "decoder_input_ids", "decoder_attention_mask",
              "decoder_position_ids")
    _task_ids(limits, given)
    if source in given and "decoder_input_ids" in given:
        b, bd = given[source].shape[0], given["decoder_input_ids"].shape[0]
        if b != bd:
            raise ValueError(f"decoder_input_ids has {bd} rows, but {source} has {b}")


def _task_ids(limits: Limits, given: Mapping[str, Any]) -> None:
    """``task_ids`` ``(B,)``: one task per row of the model's input."""
    if "task_ids" not in given:
        return
    _rank(given, "task_ids", 1, "(batch,): one task per row")
    source = "input_ids" if limits.vocab is not None else "pixel_values"
    if source in given and given["task_ids"].shape[0] != given[source].shape[0]:
        raise ValueError(f"task_ids must be ({given[source].shape[0]},), one task per row of "
                         f"{source}, got {tuple(given['task_ids'].shape)}")


def check_cache(limits: Limits, given: Mapping[str, Any]) -> None:
    """``past_key_values`` is this model's cache, for this batch; ``cache_position`` ``(T,)``."""
    from .cache import ModelCache

    cache = given.get("past_key_values")
    if cache is None:
        return
    if not isinstance(cache, ModelCache):
        raise TypeError("past_key_values must be the model's cache (model.new_cache(...), or "
                        f"the past_key_values a use_cache=True call returned), got "
                        f"{type(cache).__name__}")
    ids = "decoder_input_ids" if limits.encoder_decoder else limits.source
    if ids not in given:
        return
    B, T = given[ids].shape[0], given[ids].shape[1]
    stack = cache.stack
    if stack is not None and stack.batch != B:
        raise ValueError(f"past_key_values holds {stack.batch} rows, but {ids} has {B}")
    if cache.memory is not None and cache.memory.shape[0] != B:
        raise ValueError(f"past_key_values holds an encoder output of {cache.memory.shape[0]} "
                         f"rows, but {ids} has {B}")
    if "cache_position" in given:
        _rank(given, "cache_position", 1, "(sequence,): the slots of this step's tokens")
        if given["cache_position"].shape[0] != T:
            raise ValueError(f"cache_position must have one slot per token of {ids}, ({T},), "
                             f"got {tuple(given['cache_position'].shape)}")


def _conditions(limits: Limits, given: Mapping[str, Any],
                cache_grows: bool) -> list[tuple[Tensor, Callable[[], str]]]:
    """``(0-dim bool tensor: the input is fine, message if not)`` for every value rule."""
    conds: list[tuple[Tensor, Callable[[], str]]] = []

    def within(name: str, high: int | None, what: Callable[[int], str]) -> None:
        x = given.get(name)
        if x is None or x.numel() == 0:
            return
        conds.append((x.min() >= 0, lambda: f"{name} contains {int(x.min())}; it must be >= 0"))
        if high is not None:
            conds.append((x.max() < high, lambda: what(int(x.max()))))

    for name in ID_INPUTS:
        within(name, limits.vocab, lambda v, n=name: f"{n} contains {v}, but the vocabulary has "
               f"{limits.vocab} ids (0..{limits.vocab - 1})")
    within("token_type_ids", None if limits.segments else limits.token_types,
           lambda v: f"token_type_ids contains {v}, but the model has {limits.token_types} "
           f"token types (0..{limits.token_types - 1})")
    within("task_ids", limits.tasks,
           lambda v: f"task_ids contains {v}, but the model knows {limits.tasks} tasks "
           f"(0..{(limits.tasks or 1) - 1})")
    rows = limits.position_rows
    for name in ("position_ids", "decoder_position_ids"):
        within(name, rows, lambda v, n=name: f"{n} contains {v}, but the position table has "
               f"{rows} rows (0..{rows - 1 if rows else 0})")
    for name in MASK_INPUTS:
        m = given.get(name)
        if m is not None and m.numel() and m.dtype != torch.bool:
            conds.append((((m == 0) | (m == 1)).all(),
                          lambda n=name, m=m: f"{n} contains {_not_01(m)}; a mask holds only 0 "
                          "(padding) and 1 (a real token)"))
    cache = given.get("past_key_values")
    stack = getattr(cache, "stack", None)
    if stack is not None:
        ids = given.get("decoder_input_ids", given.get("input_ids"))
        slots = given.get("cache_position")
        if slots is None and ids is not None:
            slots = stack.slots(ids.shape[1])  # the sequence's (memory tokens' come first)
        if slots is not None:
            capacity = stack.capacity - getattr(stack, "reserved", 0)
            limit = limits.context if cache_grows else min(
                [c for c in (limits.context, capacity) if c is not None])
            why = "the model's context" if limit == limits.context else "the cache's capacity"
            given_slots = "cache_position" in given
            where = ("cache_position" if given_slots else
                     "after the positions past_key_values holds")
            conds.append((slots.min() >= 0, lambda: f"cache_position contains "
                          f"{int(slots.min())}; slots must be >= 0"))
            if limit is not None:
                conds.append((slots.max() < limit, lambda: f"this step writes cache slot "
                              f"{int(slots.max())} ({where}), but {why} is {limit} "
                              f"(slots 0..{limit - 1})"))
    return conds


def _not_01(m: Tensor) -> str:
    bad = m[(m != 0) & (m != 1)]
    return str(bad[0].item())


def check_values(limits: Limits, given: Mapping[str, Any], *, cache_grows: bool = True) -> None:
    """Every data-dependent rule, read back with one synchronisation."""
    conds = _conditions(limits, given, cache_grows)
    if not conds:
        return
    device = conds[0][0].device
    ok = torch.stack([c.to(device) for c, _ in conds]).tolist()
    for fine, (_, message) in zip(ok, conds):
        if not fine:
            raise ValueError(message())


def check_in_graph(limits: Limits, given: Mapping[str, Any]) -> None:
    """While ``torch.export`` traces: ids' range checks as runtime asserts of the program."""
    for name in ID_INPUTS:
        x = given.get(name)
        if x is None or limits.vocab is None:
            continue
        low, high = x.min().item(), x.max().item()
        torch._check(low >= 0, lambda n=name: f"{n} contains a negative id")
        torch._check(high < limits.vocab,
                     lambda n=name: f"{n} contains an id >= the vocabulary ({limits.vocab})")
