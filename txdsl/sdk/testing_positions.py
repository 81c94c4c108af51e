"""The position contract suite: checks every position scheme must pass.

A position scheme only means something inside a model, so each check builds a
tiny one (``d_model`` 32, 4 heads, 2 layers, context 64, vocab 40) through
:func:`txdsl.build` of a spec string: the scheme in the embedding block
(``acts == "embedding"``) or on the stack, with an attention that takes it
(``full`` where it can, else the kind the scheme pairs with: ``relative`` for
shaw/cope, ``disentangled``, ``relative_xl``); then the model's position module is
replaced by the subject's own build (its implementation, its parameters scaled up
so a wrong index shows). The checks:

- ``output_shapes``: lengths 1 and 7 give finite ``(B, T, vocab)`` logits; the
  module's own output has the contract's shape and the dtype asked for (rotary
  ``(B|1, T, rot)`` cos/sin in float32 and bfloat16, a ``(B|1, H, T, S)`` bias,
  ``(B, T, width)`` embeddings); a bfloat16 model stays finite and close to float32;
- ``translation_invariance``: a scheme acting inside attention claims relative
  positions, so shifting every position id by the same amount changes nothing (n/a
  where the outputs don't read position ids at all: cope, relative_xl);
- ``cached_decoding``: a causal model decoding 3, 2, 1, 1 tokens through its cache
  gives the full forward's logits, token for token;
- ``padding``: left- and right-padded rows (each row with its own position ids, as
  the runtime's contract) give, on their real tokens, the logits of the row alone,
  causal and bidirectional;
- ``parameter_count``: ``param_count(dims)`` equals the built module's parameters,
  and ``flops_per_token`` is non-negative and non-decreasing in length;
- ``reductions``: the kind's known degenerate cases equal the simpler model
  (``rope`` with ``factor: 1`` under each ``scaling`` == unscaled RoPE; ``shaw``
  with ``max_distance: 0, values: false`` == no position).
"""

from __future__ import annotations

import copy
import dataclasses
import re

import torch

from .args import Dims
from .positions import PositionContext
from .testing import FAMILY_CHECKS, NotApplicable, Subject

B, T, VOCAB = 2, 7, 40
DIMS = Dims(d_model=32, width=32, embed_size=32, context=64, heads=4, layers=2)
SPEC = """
model position_verify {{
  vocab = {vocab}; d_model = 32; heads = 4; context = 64
  embedding {{ tokens = vocab{embedding} }}
  {stack}(2) {{ norm = layernorm{position}
    attention = {attention}; ffn = mlp(hidden: 64) }}
  head = lm
}}
"""
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_models: dict[tuple, tuple[Subject, torch.nn.Module]] = {}  # (id(subject), ...) -> model


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, (int, float)):
        return repr(v) if v >= 0 else f"-{-v!r}"
    if isinstance(v, str) and _IDENT.match(v) and v not in ("true", "false", "none"):
        return v
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _call(kind: str, args) -> str:
    given = {k: getattr(args, k) for k in sorted(args.model_fields_set)}
    return f"{kind}({', '.join(f'{k}: {_value(v)}' for k, v in given.items())})"


def _attention(registry, s: Subject) -> str:
    """An attention kind that takes the scheme: ``full`` if it can, else its partner."""
    cls = type(s.args)
    if cls.acts == "embedding":
        return "full"
    serves = getattr(cls, "attentions", None)
    fits = [k for k in registry.kinds("attention")
            if cls.acts in getattr(registry.args("attention", k), "accepts", ())
            and (serves is None or k in serves)
            and s.kind in (getattr(registry.args("attention", k), "positions", None) or (s.kind,))]
    if not fits:
        raise NotApplicable(f"no installed attention takes positions acting on {cls.acts}")
    return next((k for k in ("full", s.kind) if k in fits), fits[0])


def _paired_unsupported(s: Subject, *uses: str) -> None:
    """Skip a check the attention the scheme pairs with declares it can't serve."""
    from ..plugins import get_registry

    registry = get_registry()
    attention = _attention(registry, s)
    unsupported = getattr(registry.args("attention", attention), "unsupported", {})
    for use in uses:
        if use in unsupported:
            raise NotApplicable(f"'{attention}' (the attention it pairs with) has no {use} "
                                f"use: {unsupported[use]}")


def _with(s: Subject, **update) -> Subject:
    """``s`` with some arguments changed (validated again)."""
    given = {k: getattr(s.args, k) for k in s.args.model_fields_set}
    return dataclasses.replace(s, args=type(s.args).model_validate({**given, **update}))


def tiny_model(s: Subject | None, causal: bool = True, kind: str | None = None):
    """A 2-layer model with ``s``'s scheme (``None``: no position, ``kind`` attention),
    the position module built by ``s.build``; one per subject and direction."""
    import txdsl
    from ..front.validate import dims_for
    from ..plugins import get_registry

    key = (id(s), causal, kind)
    if key in _models:
        return _models[key][1]
    registry = get_registry()
    attention = kind or _attention(registry, s)
    att_args = getattr(registry.args("attention", attention), "example", {})
    att = f"{attention}(heads: heads{''.join(f', {k}: {_value(v)}' for k, v in att_args.items())})"
    unsupported = getattr(registry.args("attention", attention), "unsupported", {})
    use = "causal" if causal else "bidirectional"
    if use in unsupported:
        raise NotApplicable(f"'{attention}' (the attention it pairs with) has no {use} use: "
                            f"{unsupported[use]}")
    embedded = s is not None and type(s.args).acts == "embedding"
    text = SPEC.format(vocab=VOCAB, stack="decoder" if causal else "encoder", attention=att,
                       embedding=f"; position = {_call(s.kind, s.args)}" if embedded else "",
                       position=f"; position = {_call(s.kind, s.args)}"
                       if s is not None and not embedded else "")
    model = txdsl.build(text, backend="eager", seed=0).module.eval()
    with torch.no_grad():  # sharper attention: a tiny random model's is near uniform, which
        for layer in (model.decoder or model.encoder).layers:  # hides what positions do
            for p in layer.attention.parameters():
                p.mul_(4.0)
    if s is not None:
        ir = txdsl.parse(text)
        stack = ir.decoder if causal else ir.encoder
        owner = model.embedding if embedded else (model.decoder if causal else model.encoder)
        dims = dims_for(ir, registry, stack=None if embedded else stack)
        module = dataclasses.replace(s, dims=dims).make(seed=1)
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(2.0)  # scale the tables up so a wrong index shows
        owner.position = module
    _models[key] = (s, model)
    return model


def _close(got: torch.Tensor, want: torch.Tensor, what: str, rel: float = 1e-4) -> None:
    """Equal up to ``rel`` of the largest value (a tiny model's logits are ~0.05)."""
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shapes {tuple(got.shape)} vs {tuple(want.shape)}")
    diff, scale = (got - want).abs().max().item(), want.abs().max().item()
    if not diff <= rel * scale + 1e-9:
        raise AssertionError(f"{what}: outputs differ (max abs diff {diff:.3g}, "
                             f"{diff / max(scale, 1e-30):.2%} of the largest logit)")


def _logits(model, ids, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, **kw).logits


def _ids(rows: int = B, length: int = T) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (rows, length), generator=g)


# ------------------------------------------------------------------- checks


def _module_shapes(s: Subject) -> None:
    """The module's own outputs: ``(B, T, width)`` embeddings, rotary tables
    ``(B|1, 1, T, rot)`` or a finite ``(B|1, H, T, S)`` bias in the dtype asked for."""
    acts, module = type(s.args).acts, dataclasses.replace(s, dims=DIMS).make()
    pos = torch.arange(T)[None].expand(B, T)
    with torch.no_grad():
        if acts == "embedding":
            got = module(pos)
            if tuple(got.shape) != (B, T, DIMS.width):
                raise AssertionError(f"embeddings {tuple(got.shape)}, expected "
                                     f"{(B, T, DIMS.width)}")
            return
        for dtype in (torch.float32, torch.bfloat16):
            ctx = PositionContext.build(module, pos, pos, dtype)
            for t in ctx.rotary or ():
                if t.dtype != dtype or t.shape[0] not in (1, B) or t.shape[2] != T:
                    raise AssertionError(f"rotary tables {tuple(t.shape)} {t.dtype}, "
                                         f"expected (B|1, 1, {T}, rot) {dtype}")
            bias = ctx.bias
            if bias is not None and (bias.shape[0] not in (1, B)
                                     or tuple(bias.shape[1:]) != (DIMS.heads, T, T)
                                     or not torch.isfinite(bias).all()):
                raise AssertionError(f"bias {tuple(bias.shape)}, expected finite "
                                     f"(B|1, {DIMS.heads}, {T}, {T})")


def output_shapes(s: Subject) -> None:
    """Lengths 1 and 7 give finite logits; the module's outputs have the contract's
    shapes and dtypes; a bfloat16 model is finite and close to the float32 one."""
    model = tiny_model(s)
    for length in (1, T):
        got = _logits(model, _ids(B, length))
        if tuple(got.shape) != (B, length, VOCAB) or not torch.isfinite(got).all():
            raise AssertionError(f"length {length}: logits {tuple(got.shape)}, expected finite "
                                 f"{(B, length, VOCAB)}")
    _module_shapes(s)
    full = _logits(model, _ids())
    low = _logits(copy.deepcopy(model).to(torch.bfloat16), _ids())
    if low.dtype != torch.bfloat16 or not torch.isfinite(low).all():
        raise AssertionError(f"bfloat16 model: logits {low.dtype}, finite "
                             f"{bool(torch.isfinite(low).all())}")
    err = ((low.float() - full).abs().max() / full.abs().max()).item()
    if err > 0.1:
        raise AssertionError(f"bfloat16 logits are {err:.1%} (of the largest) off float32")


def translation_invariance(s: Subject) -> None:
    """A scheme acting inside attention is relative: shifting every position changes nothing."""
    if type(s.args).acts == "embedding":
        raise NotApplicable("absolute positions, added to the embeddings")
    model, ids = tiny_model(s), _ids()
    base = _logits(model, ids, position_ids=torch.arange(T)[None].expand(B, T))
    if torch.equal(_logits(model, ids, position_ids=torch.zeros(B, T, dtype=torch.long)), base):
        raise NotApplicable("the outputs don't read position ids (positions come from the "
                            "content, as CoPE's, or from the attention's own layout)")
    for shift in (5, 11):
        moved = _logits(model, ids, position_ids=(torch.arange(T) + shift)[None].expand(B, T))
        _close(moved, base, f"positions shifted by {shift} (scores must depend on i - j only)")


def cached_decoding(s: Subject) -> None:
    """Decoding 3, 2, 1, 1 tokens through the cache == the full causal forward."""
    _paired_unsupported(s, "causal", "decode")
    model, ids = tiny_model(s), _ids()
    full = _logits(model, ids)
    cache = model.new_cache(batch=B, capacity=T + 2)
    steps, t = [], 0
    for n in (3, 2, 1, 1):
        steps.append(_logits(model, ids[:, t:t + n], past_key_values=cache, use_cache=True))
        t += n
    _close(torch.cat(steps, 1), full[:, :t], "cached decoding vs the full forward")


def padding(s: Subject) -> None:
    """Padded rows, each with its own position ids, match each row alone on real tokens."""
    ids = _ids()
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, T - 3:] = 0  # right padding
    mask[1, :2] = 0  # left padding
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    _paired_unsupported(s, "padding")
    ran = False
    for causal in (True, False):
        try:
            model = tiny_model(s, causal)
        except NotApplicable:
            continue
        ran = True
        batch = _logits(model, ids, attention_mask=mask, position_ids=positions)
        for row in range(B):
            real = mask[row].bool()
            alone = _logits(model, ids[row:row + 1, real])[0]
            _close(batch[row, real], alone, f"row {row} padded vs alone (causal={causal})")
    if not ran:
        raise NotApplicable("no direction the paired attention serves")


def parameter_count(s: Subject) -> None:
    """``param_count(dims)`` == the built module's parameters; FLOPs non-negative, non-decreasing."""
    module = dataclasses.replace(s, dims=DIMS).make()
    built, said = sum(p.numel() for p in module.parameters()), s.args.param_count(DIMS)
    if built != said:
        raise AssertionError(f"param_count says {said:,}, the built module has {built:,}")
    f1, f2 = s.args.flops_per_token(DIMS, 16), s.args.flops_per_token(DIMS, 64)
    if not (0 <= f1 <= f2):
        raise AssertionError(f"flops_per_token is not non-negative and non-decreasing: {f1}, {f2}")


def _rope_factor_one(s: Subject) -> None:
    plain = tiny_model(_with(s, scaling=None, factor=1.0, attention_factor=None))
    ids, pos = _ids(), (torch.arange(T) + 40)[None].expand(B, T)  # inside the context
    want = _logits(plain, ids, position_ids=pos)
    for scaling in ("linear", "dynamic", "yarn", "llama3"):
        scaled = tiny_model(_with(s, scaling=scaling, factor=1.0, attention_factor=None,
                                  original_context=DIMS.context))
        _close(_logits(scaled, ids, position_ids=pos), want,
               f"rope scaling {scaling} with factor 1 vs unscaled rope")


def _shaw_clip_zero(s: Subject) -> None:
    clipped = tiny_model(_with(s, max_distance=0, values=False))
    from ..plugins import get_registry

    plain = tiny_model(None, kind=_attention(get_registry(), s))
    plain.load_state_dict(clipped.state_dict(), strict=False)  # the same attention weights
    ids = _ids()
    _close(_logits(clipped, ids), _logits(plain, ids),
           "shaw max_distance 0, keys only, vs no position (one embedding: no relative term)")


REDUCTIONS = {"rope": _rope_factor_one, "shaw": _shaw_clip_zero}


def reductions(s: Subject) -> None:
    """The kind's degenerate cases equal the simpler model (rope factor 1, shaw clipping 0)."""
    check = REDUCTIONS.get(s.kind)
    if check is None:
        raise NotApplicable(f"no known reduction for '{s.kind}'")
    check(s)


POSITION_CHECKS = [output_shapes, translation_invariance, cached_decoding, padding,
                   parameter_count, reductions]
FAMILY_CHECKS["position"] = POSITION_CHECKS
