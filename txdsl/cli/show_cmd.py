"""``txdsl show SPEC [--tp N --fsdp M --explain]``: shape and resource estimates (per rank)."""

from __future__ import annotations

import argparse
import json
import re

from ..front.estimate import DTYPE_BYTES, Estimate, estimate
from ..ir import ModelIR
from ..front.resolve import parse_file
from ..plugins import get_registry


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="show a model's structure and estimates",
                       description="Print a model's layers, parameter count, FLOPs per token "
                                   "and memory estimates (nothing is allocated).")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--model", help="which model of the file (default: the last one)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument("--tx", action="store_true",
                     help="print the resolved model as a flat .tx spec (no imports, no extends)")
    p.add_argument("--batch", type=positive_int, default=1,
                   help="batch size for memory estimates")
    p.add_argument("--seq-len", type=positive_int,
                   help="sequence length (default: the model's context)")
    p.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="float32")
    p.add_argument("--tp", type=positive_int, default=1, metavar="N",
                   help="tensor-parallel size: validate the split and report per-rank memory")
    p.add_argument("--fsdp", type=positive_int, default=1, metavar="M",
                   help="FSDP2 (fully sharded data-parallel) size, for per-rank memory")
    p.add_argument("--explain", action="store_true",
                   help="with --tp/--fsdp: how each component splits (or that it is replicated)")
    p.set_defaults(run=run)


def positive_int(text: str) -> int:
    """An argument that must be a whole number >= 1 (else a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    ir = parse_file(args.spec, model=args.model)
    if args.tx:
        from ..front.unparse import to_tx

        print(to_tx(ir), end="")
        return 0
    registry = get_registry()
    est = estimate(ir, registry, batch=args.batch, seq_len=args.seq_len, dtype=args.dtype)
    states = decode_states(ir, registry, est.seq_len)
    parallel = _parallel(ir, args) if args.tp > 1 or args.fsdp > 1 or args.explain else None
    if args.json:
        data = {**to_json(ir, est), "decode_states": states}
        if parallel is not None:
            data["per_rank"] = parallel[0].to_dict()
            data["tp_plan"] = [{"path": e.path, "component": e.what,
                                "styles": dict(e.plan.styles) if e.plan else None,
                                "split": e.plan.note if e.plan else "replicated (no declaration)"}
                               for e in parallel[1]]
        print(json.dumps(data, indent=2))
    else:
        print(render(ir, est, states))
        if parallel is not None:
            print(_render_parallel(*parallel, explain=args.explain))
    return 0


def _parallel(ir: ModelIR, args: argparse.Namespace):
    """(per-rank memory, the plan) for ``--tp``/``--fsdp``; an indivisible split is a
    located error first."""
    from ..parallel.memory import per_rank
    from ..parallel.plan import check_parallel, model_plan

    registry = get_registry()
    check_parallel(ir, registry, tp=args.tp)
    mem = per_rank(ir, registry, tp=args.tp, fsdp=args.fsdp, batch=args.batch,
                   seq_len=args.seq_len, dtype=args.dtype)
    return mem, model_plan(ir, registry, args.tp)


def _render_parallel(mem, entries, *, explain: bool) -> str:
    lines = ["", f"  per rank (tensor-parallel {mem.tp} x fsdp {mem.fsdp}, rank 0, the largest)",
             f"    parameters      {mem.params:,} ({_bytes(mem.param_bytes)}, {mem.dtype})",
             f"    KV cache        {_bytes(mem.kv_cache_bytes)} (batch {mem.batch} per rank, "
             f"seq_len {mem.seq_len})",
             f"    activations     {_bytes(mem.activation_bytes)} (training, batch {mem.batch} "
             f"per rank, seq_len {mem.seq_len})"]
    if mem.replicated:
        lines.append("    replicated (no tensor-parallel declaration): "
                     + ", ".join(mem.replicated))
    if explain:
        lines.append("  tensor-parallel plan (every layer of a stack alike: layers.*)")
        shown: list[str] = []
        for e in entries:
            line = re.sub(r"\.layers\.\d+\.", ".layers.*.", e.explain())
            if line not in shown:
                shown.append(line)
        lines += [f"    {line}" for line in shown]
    return "\n".join(lines)


def state_kind(args, dims, seq: int) -> str:
    """What one attention keeps to decode, from its cost model: a KV cache (grows with the
    length), a ring buffer of ``ring_slots`` (a window), or a constant recurrent state."""
    grows = args.state_elements(dims, 2 * seq) != args.state_elements(dims, seq)
    if grows:
        return "KV cache"
    slots = args.ring_slots(dims) if hasattr(args, "ring_slots") else None
    return f"ring buffer of {slots} slots" if slots is not None else "recurrent state"


def decode_states(ir: ModelIR, registry, seq: int) -> dict[str, list[int]]:
    """``{label: decoder layer indices}`` of what each causal layer keeps to decode."""
    from ..front.validate import dims_for

    out: dict[str, list[int]] = {}
    for stack in (s for s in ir.stacks if s.role == "decoder"):
        dims = dims_for(ir, registry, stack=stack)
        for layer in stack.layers:
            if layer.attention is None:
                continue
            args = registry.args(layer.attention.family, layer.attention.kind).model_validate(
                layer.attention.args)
            if hasattr(args, "state_elements"):
                out.setdefault(state_kind(args, dims, seq), []).append(layer.index)
    return out


def _states_text(states: dict[str, list[int]] | None) -> str:
    if states is None:
        return "KV cache"
    if not states:
        return "none (no decoder)"
    if len(states) == 1:
        return next(iter(states))
    return "; ".join(f"{k} (layers {','.join(map(str, v))})" for k, v in states.items())


def to_json(ir: ModelIR, est: Estimate) -> dict:
    return {"name": ir.name, "hash": ir.hash(), "d_model": ir.d_model,
            "layers": est.layers, "stacks": {s.role: len(s.layers) for s in ir.stacks},
            **{k: v for k, v in est.to_dict().items() if k != "layers"},
            "ir": ir.model_dump(mode="json")}


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _layer_summary(stack) -> list[str]:
    """Layers grouped into runs that are specified identically."""
    out, run = [], []
    for layer in stack.layers:
        key = (layer.residual, str(layer.norm), str(layer.attention), str(layer.cross_attention),
               str(layer.ffn), getattr(layer, "no_position", False),
               str(getattr(layer, "position", None)))
        if run and run[-1][0] == key:
            run[-1][1].append(layer.index)
        else:
            run.append((key, [layer.index]))
    for (residual, norm, attn, cross, ffn, nope, own), idx in run:
        where = f"{idx[0]}" if len(idx) == 1 else f"{idx[0]}..{idx[-1]}"
        shared = " (shared)" if any(stack.layers[i].shares is not None for i in idx) else ""
        parts = [f"attention {attn}"] + ([f"cross {cross}"] if cross != "None" else [])
        parts += [f"ffn {ffn}" if ffn != "None" else "no ffn", f"norm {norm} ({residual})"]
        parts += ["no position"] if nope else []
        parts += [f"position {own}"] if own != "None" else []
        out.append(f"    layer {where:<8} " + "; ".join(parts) + shared)
    return out


def render(ir: ModelIR, est: Estimate, states: dict[str, list[int]] | None = None) -> str:
    lines = [f"model {ir.name}  (hash {ir.hash()[:12]})", f"  d_model     {ir.d_model}"]
    e = ir.embedding
    inp = (f"tokens {e.tokens}" if e.tokens else f"features {e.features}"
           if getattr(e, "features", None) else f"patches {e.patches}")
    lines.append(f"  embedding   {inp}, size {e.size}"
                 + (f", position {e.position}" if e.position else "")
                 + (f", norm {e.norm}" if getattr(e, "norm", None) else ""))
    for stack in ir.stacks:
        extra = f", position {stack.position}" if stack.position else ""
        if getattr(stack, "memory_tokens", 0):
            extra += f", {stack.memory_tokens} memory tokens ({stack.memory_form})"
        if getattr(stack, "halting", None) is not None:
            h = stack.halting
            extra += (f", halting act(threshold: {h.threshold}, ponder: {h.ponder}, "
                      f"timestep: {str(h.timestep).lower()}) over at most {len(stack.layers)} steps")
        lines.append(f"  {stack.role:<11} {len(stack.layers)} layers, "
                     f"{'causal' if stack.causal else 'bidirectional'}{extra}")
        lines += _layer_summary(stack)
        if stack.final_norm:
            lines.append(f"    final norm {stack.final_norm}")
    for head in ir.heads:
        lines.append(f"  head        {head.name}: {head.head}")
    lines.append("")
    lines.append(f"  parameters        {est.params:,}")
    for name, n in est.params_by_component.items():
        lines.append(f"    {name:<15} {n:,}")
    lines.append(f"  FLOPs per token   {est.flops_per_token:,} (forward, seq_len {est.seq_len})")
    lines.append(f"  decode state      {_bytes(est.kv_cache_bytes)} (batch {est.batch}, "
                 f"seq_len {est.seq_len}, {est.dtype}): {_states_text(states)}")
    lines.append(f"  activations       {_bytes(est.activation_bytes)} (training, batch "
                 f"{est.batch}, seq_len {est.seq_len}, {est.dtype})")
    if est.unknown:
        lines.append(f"  no cost model for: {', '.join(est.unknown)} (not counted)")
    return "\n".join(lines)
