"""``txdsl bench SPEC|DIR``: how fast one build runs here, beside what the machine can do.

Builds the spec (``--backend``, ``--dtype``, ``--quantize``) or loads an artifact
directory as built, then times:

- the machine's dense matmul rate in float32 and bfloat16 (``--gemm-size``, square);
- the forward pass at ``--batch`` x ``--seq-len`` (median of ``--repeat`` runs after
  warm-up): latency, tokens/s, and the FLOP/s achieved from the cost model's
  ``flops_per_token`` as a fraction of the GEMM rate of the build's dtype;
- with ``--generate N``, greedy decoding of ``N`` tokens after a ``--prompt-len``
  prompt: decode tokens/s (``Built.generate`` when the build has one, else the
  model's own ``generate``).

A progress bar on a terminal (stderr), plain lines otherwise; ``--json`` prints the
figures as one JSON object. The machine is what it is: on a loaded one the numbers
say so, they are not a verdict on the build.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .main import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="time a build: forward latency, tokens/s, decode tokens/s",
        description="Build a spec (or load an artifact directory) and time its forward pass "
                    "and, with --generate, its greedy decoding; also the machine's float32 "
                    "and bfloat16 matmul rates, so the figures read as a fraction of them.")
    p.add_argument("spec", metavar="SPEC|DIR", help="a .tx file or an artifact directory")
    p.add_argument("--model", metavar="NAME", help="which model of the file (default: the last)")
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="eager, inductor, aot, ... (default: eager; an artifact: as built)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="default float32 (an artifact: as built)")
    p.add_argument("--quantize", metavar="SCHEME", help="int8-weight or int4-weight")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option (repeatable)")
    p.add_argument("--batch", type=_positive, default=1, help="rows per forward (default 1)")
    p.add_argument("--seq-len", type=_positive, default=None,
                   help="tokens per row (default 128, at most the model's context)")
    p.add_argument("--generate", type=_positive, default=None, metavar="N",
                   help="also time greedy decoding of N new tokens")
    p.add_argument("--prompt-len", type=_positive, default=16,
                   help="prompt tokens before decoding (default 16)")
    p.add_argument("--repeat", type=_positive, default=10, help="timed runs (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--gemm-size", type=int, default=1024,
                   help="side of the square matmul timed for the machine's rate (0: skip)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


# ---------------------------------------------------------------- timing


class _Progress:
    """A rich progress bar on a terminal (stderr), one plain line per task otherwise."""

    def __init__(self, quiet: bool):
        self.bar = None
        if sys.stderr.isatty() and not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
        self.quiet = quiet

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def times(self, what: str, fn: Callable[[], Any], repeat: int, warmup: int) -> list[float]:
        """Seconds of each of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
        if self.bar is None and not self.quiet:
            print(f"timing {what} ({warmup} warm-up, {repeat} runs)", file=sys.stderr)
        task = self.bar.add_task(what, total=warmup + repeat) if self.bar is not None else None
        out = []
        for i in range(warmup + repeat):
            start = time.perf_counter()
            fn()
            if i >= warmup:
                out.append(time.perf_counter() - start)
            if task is not None:
                self.bar.advance(task)
        return out


def gemm_rates(n: int, progress: _Progress, repeat: int = 3) -> dict[str, float]:
    """FLOP/s of an n x n x n matmul in float32 and bfloat16 (median of ``repeat``)."""
    import torch

    rates = {}
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(n, n).to(getattr(torch, dtype))
        b = torch.randn(n, n).to(getattr(torch, dtype))
        t = statistics.median(progress.times(f"matmul {n}^3 {dtype}", lambda: a @ b, repeat, 1))
        rates[dtype] = 2 * n**3 / t
    return rates


# ---------------------------------------------------------------- the build


def _built(args: argparse.Namespace) -> dict[str, Any]:
    """What to time: ``call`` (keyword inputs), ``generate``, the IR, registry, names."""
    from ..back.backends import BuildError
    from ..plugins import get_registry

    path = Path(args.spec)
    if path.is_dir():
        from ..back.load import load_artifact

        for flag in ("dtype", "quantize", "model"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag} applies to a spec; {path} is an artifact, benched "
                                 "as it was built")
        try:
            art = load_artifact(path, backend=args.backend, options=args.option or None)
        except BuildError as exc:
            raise _Failed(str(exc)) from None
        q = art.manifest.quantization
        gen = getattr(art.model, "generate", None) if art.model is not None else None
        return {"call": art.module, "generate": gen, "ir": art.ir, "registry": get_registry(),
                "backend": art.backend, "dtype": art.manifest.dtype,
                "quantize": q.scheme if q else None, "device": art.manifest.device,
                "why_no_generate": "a self-contained package has no decode loop; "
                                   "bench the directory with --backend eager or inductor"}
    from ..back.builder import build
    from .build_cmd import _check_quantize

    _check_quantize(args.quantize)
    try:
        built = build(path, backend=args.backend or "eager", dtype=args.dtype or "float32",
                      quantize=args.quantize, model=args.model, options=args.option or None,
                      progress=sys.stderr.isatty() and not args.json)
    except BuildError as exc:
        raise _Failed(str(exc)) from None
    gen = getattr(built, "generate", None) or getattr(built.module, "generate", None)
    return {"call": built, "generate": gen, "ir": built.ir, "registry": built.registry,
            "backend": built.backend, "dtype": built.target.dtype, "quantize": args.quantize,
            "device": built.target.device, "why_no_generate": "the model has no generate"}


class _Failed(Exception):
    """A build or a timed call failed (exit 1)."""


def _inputs(ir: Any, registry: Any, batch: int, seq: int, device: str, dtype: str) -> dict:
    from ..back.inputs import example_inputs

    return example_inputs(ir, registry, batch=batch, seq=seq, device=device, dtype=dtype)


def _flops_per_token(ir: Any, registry: Any, seq: int) -> int | None:
    from ..front.estimate import EstimateError, estimate

    try:
        return estimate(ir, registry, seq_len=seq).flops_per_token
    except (EstimateError, NotImplementedError):
        return None


def bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    b = _built(args)
    from ..back.inputs import _context

    ir = b["ir"]
    context = _context(ir, b["registry"])
    b["context"] = context
    seq = args.seq_len or (min(128, context) if context else 128)
    if context and seq > context:
        raise UsageError(f"--seq-len {seq} is longer than {ir.name}'s context ({context})")
    result: dict[str, Any] = {
        "model": ir.name, "backend": b["backend"], "dtype": b["dtype"],
        "quantize": b["quantize"], "device": b["device"], "threads": torch.get_num_threads(),
        "batch": args.batch, "seq_len": seq}
    with _Progress(quiet=args.json) as progress, torch.no_grad():
        if args.gemm_size > 0:
            rates = gemm_rates(args.gemm_size, progress)
            result["gemm"] = {"size": args.gemm_size,
                              **{f"{k}_flops": v for k, v in rates.items()}}
        inputs = _inputs(ir, b["registry"], args.batch, seq, b["device"], b["dtype"])
        call = b["call"]
        try:
            times = progress.times(f"forward {args.batch}x{seq}", lambda: call(**inputs),
                                   args.repeat, args.warmup)
        except Exception as exc:
            raise _Failed(f"the forward pass failed: {type(exc).__name__}: {exc}") from None
        median = statistics.median(times)
        forward = {"median_s": median, "min_s": min(times), "max_s": max(times),
                   "runs": len(times), "tokens_per_s": args.batch * seq / median}
        fpt = _flops_per_token(ir, b["registry"], seq)
        if fpt:
            forward["flops"] = fpt * args.batch * seq / median
            peak = result.get("gemm", {}).get(f"{b['dtype']}_flops")
            if peak:
                forward["fraction_of_gemm"] = forward["flops"] / peak
        result["forward"] = forward
        if args.generate:
            result["decode"] = _decode(args, b, progress)
    return result


def _decode(args: argparse.Namespace, b: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    ir, gen = b["ir"], b["generate"]
    if gen is None:
        return {"skipped": b["why_no_generate"]}
    context = b["context"]
    if context and args.prompt_len + args.generate > context:
        raise UsageError(f"--prompt-len {args.prompt_len} + --generate {args.generate} is more "
                         f"than {ir.name}'s context ({context})")
    ids = _inputs(ir, b["registry"], args.batch, args.prompt_len, b["device"],
                  b["dtype"]).get("input_ids")
    if ids is None:
        return {"skipped": "the model takes no input_ids"}
    try:
        times = progress.times(f"decode {args.generate} tokens",
                               lambda: gen(ids, max_new_tokens=args.generate),
                               max(1, min(args.repeat, 3)), min(args.warmup, 1))
    except (TypeError, ValueError, NotImplementedError) as exc:  # an encoder has no decode
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    median = statistics.median(times)
    return {"median_s": median, "new_tokens": args.generate, "prompt_len": args.prompt_len,
            "tokens_per_s": args.batch * args.generate / median}


# ---------------------------------------------------------------- output


def _rate(flops: float) -> str:
    return f"{flops / 1e9:,.1f} GFLOP/s"


def report(r: dict[str, Any]) -> str:
    q = f", {r['quantize']}" if r["quantize"] else ""
    lines = [f"bench {r['model']}: {r['backend']}, {r['device']}, {r['dtype']}{q}, "
             f"{r['threads']} threads"]
    if "gemm" in r:
        g = r["gemm"]
        lines.append(f"machine: matmul {g['size']}^3 float32 {_rate(g['float32_flops'])}, "
                     f"bfloat16 {_rate(g['bfloat16_flops'])} "
                     f"({g['bfloat16_flops'] / g['float32_flops']:.2f}x)")
    f = r["forward"]
    line = (f"forward {r['batch']}x{r['seq_len']}: median {1e3 * f['median_s']:.2f} ms "
            f"(min {1e3 * f['min_s']:.2f}, max {1e3 * f['max_s']:.2f}, {f['runs']} runs), "
            f"{f['tokens_per_s']:,.0f} tokens/s")
    if "flops" in f:
        line += f", {_rate(f['flops'])}"
        if "fraction_of_gemm" in f:
            line += f" ({100 * f['fraction_of_gemm']:.0f}% of the {r['dtype']} matmul rate)"
    lines.append(line)
    d = r.get("decode")
    if d is not None:
        if "skipped" in d:
            lines.append(f"decode: skipped ({d['skipped']})")
        else:
            lines.append(f"decode {r['batch']}x{d['new_tokens']} after {d['prompt_len']} "
                         f"prompt tokens: {d['tokens_per_s']:,.1f} tokens/s "
                         f"(median {d['median_s']:.3f} s, greedy)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.quantize is not None:
        from .build_cmd import _check_quantize

        _check_quantize(args.quantize)
    try:
        result = bench(args)
    except _Failed as exc:
        print(f"txdsl: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0
