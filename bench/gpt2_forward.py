"""Forward throughput: txdsl's GPT-2 vs Hugging Face ``GPT2LMHeadModel``, same weights.

One process, one set of weights (Hugging Face's initialisation, copied into
every txdsl build), interleaved repetitions, medians; every number reported is
also given as a ratio to Hugging Face in eager mode (> 1: faster than HF eager).

Variants:

- ``hf_eager``          GPT2LMHeadModel, eager, HF's default attention (``sdpa``): the baseline
- ``hf_eager_attn``     the same with ``attn_implementation="eager"`` (HF's naive attention)
- ``hf_compiled``       ``torch.compile(GPT2LMHeadModel, dynamic=False)`` (Inductor)
- ``txdsl_eager``       ``txdsl.build(..., backend="eager")`` (the ``sdpa`` kernel, selected)
- ``txdsl_reference``   the same, ``force_kernels={"attention": "reference"}`` (naive attention)
- ``txdsl_inductor``    ``txdsl.build(..., backend="inductor", options={"dynamic": False})``

Before timing, each variant's logits are compared with ``hf_eager``'s on the
same input (max abs difference, reported; the run fails above ``--tol``).

    python bench/gpt2_forward.py                 # default small GPT-2, default grid
    python bench/gpt2_forward.py --full          # GPT-2 small (slow on a small CPU)
    python bench/gpt2_forward.py --grid 1x128,8x128 --reps 9
    python bench/gpt2_forward.py --check-only    # build, compare outputs, no timing
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

ALL = ("hf_eager", "hf_eager_attn", "hf_compiled", "txdsl_eager", "txdsl_reference",
       "txdsl_inductor")
COMPILED = ("hf_compiled", "txdsl_inductor")
LABELS = {
    "hf_eager": "HF eager (sdpa)",
    "hf_eager_attn": "HF eager (naive attn)",
    "hf_compiled": "HF torch.compile",
    "txdsl_eager": "txdsl eager (sdpa)",
    "txdsl_reference": "txdsl eager (reference attn)",
    "txdsl_inductor": "txdsl inductor",
}
DEFAULT_GRID = "1x64,1x256,4x256"
QUICK_GRID = "1x64,2x128"
CHECK_GRID = "2x32"


def parse_grid(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        b, _, t = item.strip().lower().partition("x")
        out.append((int(b), int(t)))
    return out


def make_variants(shape: C.GPT2Shape, names: list[str], seed: int) -> tuple[dict[str, Any], dict]:
    """Every variant as a callable model, all with the weights of one HF model."""
    import torch

    hf = C.hf_gpt2(shape, seed=seed, attn="sdpa")
    models: dict[str, Any] = {"hf_eager": hf}
    info: dict[str, Any] = {"params_hf": C.param_count(hf)}
    if "hf_eager_attn" in names:
        naive = C.hf_gpt2(shape, seed=seed, attn="eager")
        naive.load_state_dict(hf.state_dict())
        models["hf_eager_attn"] = naive
    if "hf_compiled" in names:
        models["hf_compiled"] = torch.compile(hf, backend="inductor", dynamic=False)
    builds = {
        "txdsl_eager": dict(backend="eager"),
        "txdsl_reference": dict(backend="eager", force_kernels={"attention": "reference"}),
        # no warm-up at the builder's example shape: each grid shape is compiled once
        "txdsl_inductor": dict(backend="inductor", options={"dynamic": False, "warmup": False}),
    }
    for name, kw in builds.items():
        if name not in names:
            continue
        built = C.build_txdsl(shape, seed=seed, **kw)
        C.copy_hf_to_txdsl(hf, built.module)
        models[name] = built.lowered
        info.setdefault("params_txdsl", C.param_count(built.module))
        info.setdefault("kernel_plan", {})[name] = [
            f"{c.family} {c.kind} -> {c.impl}" for c in built.plan.choices]
    return models, info


def _cache_kw(name: str) -> dict[str, Any]:
    return {"use_cache": False} if name.startswith("hf") else {}


def run(args: argparse.Namespace) -> int:
    import torch

    threads = C.set_threads(args.threads)
    shape = C.shape_from_args(args)
    names = [n for n in (args.variants.split(",") if args.variants else ALL)]
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(ALL)}")
    if args.check_only or args.no_compile or (args.quick and not args.variants):
        names = [n for n in names if n not in COMPILED]
    if "hf_eager" not in names:
        names.insert(0, "hf_eager")
    grid = parse_grid(args.grid or (CHECK_GRID if args.check_only
                                    else QUICK_GRID if args.quick else DEFAULT_GRID))
    for b, t in grid:
        if t > shape.context:
            raise SystemExit(f"sequence {t} is longer than the context ({shape.context})")
    reps = args.reps or (3 if args.quick else 9)

    print(f"gpt2_forward: {shape}, {threads} thread(s), grid {grid}, variants {names}",
          flush=True)
    t0 = time.perf_counter()
    models, info = make_variants(shape, names, args.seed)
    info["build_s"] = time.perf_counter() - t0

    rows = []
    with torch.inference_mode():
        for b, t in grid:
            ids = C.token_ids(b, t, shape.vocab, seed=args.seed + 1)
            mask = torch.ones_like(ids) if args.mask == "ones" else None
            # HF's forward builds a KV cache by default (config.use_cache); txdsl's only on
            # request: neither builds one here, like for like
            calls: dict[str, Callable[[], Any]] = {
                n: functools.partial(models[n], input_ids=ids, attention_mask=mask,
                                     **_cache_kw(n)) for n in names}
            # correctness first (this also compiles the compiled variants at this shape)
            ref = calls["hf_eager"]().logits
            entry: dict[str, Any] = {"batch": b, "seq": t, "tokens": b * t, "variants": {}}
            for n in names:
                start = time.perf_counter()
                out = calls[n]().logits
                first = time.perf_counter() - start
                diff = (out.float() - ref.float()).abs().max().item()
                v = entry["variants"][n] = {"max_abs_diff": diff}
                if n in COMPILED:
                    v["first_call_s"] = first  # includes compiling for this shape
                if not diff <= args.tol:
                    raise AssertionError(f"{n} at {b}x{t}: logits differ from hf_eager by "
                                         f"{diff:.3g} > tol {args.tol}")
            print(f"  {b}x{t}: outputs agree (max |diff| "
                  + ", ".join(f"{n} {entry['variants'][n]['max_abs_diff']:.1e}"
                              for n in names if n != "hf_eager") + ")", flush=True)
            if args.check_only:
                rows.append(entry)
                continue
            times = C.interleaved(calls, reps=reps, warmup=args.warmup,
                                  min_seconds=0.0 if args.quick else 3.0)
            base = C.summarize(times["hf_eager"])["median_s"]
            for n in names:
                s = C.summarize(times[n])
                entry["variants"][n].update(s, tokens_per_s=b * t / s["median_s"],
                                            ratio_vs_hf_eager=base / s["median_s"])
            rows.append(entry)
            print("  " + "  ".join(f"{n} {entry['variants'][n]['ratio_vs_hf_eager']:.2f}x"
                                   for n in names), flush=True)

    if args.check_only:
        print("check-only: every variant matches Hugging Face; nothing timed or written")
        return 0

    env = C.environment(threads)
    data = {
        "benchmark": "gpt2_forward",
        "what": "forward tokens/s (batch*seq / median seconds), ratios vs HF eager (>1 = faster)",
        "shape": shape.__dict__, "grid": grid, "reps": reps, "warmup": args.warmup,
        "attention_mask": args.mask, "use_cache": False, "compile": "torch.compile(..., dynamic=False), inductor",
        "tolerance": args.tol, "env": env, **info, "results": rows,
    }
    md = markdown(data, names)
    js, mdp = C.write_results(args.out or "gpt2_forward", data, md)
    print()
    print(md)
    print(f"\nwrote {js.relative_to(C.ROOT)} and {mdp.relative_to(C.ROOT)}")
    return 0


def markdown(data: dict, names: list[str]) -> str:
    s = data["shape"]
    lines = [
        "## GPT-2 forward: txdsl vs Hugging Face (same weights)",
        "",
        f"Model: {s['layers']} layers, d_model {s['d_model']}, {s['heads']} heads, "
        f"vocab {s['vocab']}, context {s['context']} ({data['params_hf']:,} parameters). "
        f"{C.env_line(data['env'])}. Median of {data['reps']}+ interleaved runs; "
        f"attention_mask: {data['attention_mask']}; no KV cache built (HF: use_cache=False).",
        "",
        "Ratio = HF eager's median time / this variant's (> 1: faster than HF eager); "
        "tokens/s in brackets.",
        "",
    ]
    head = ["batch x seq"] + [LABELS[n] for n in names]
    rows = []
    for r in data["results"]:
        cells = [f"{r['batch']}x{r['seq']}"]
        for n in names:
            v = r["variants"][n]
            cells.append(f"{v['ratio_vs_hf_eager']:.2f}x ({C.fmt_rate(v['tokens_per_s'])})")
        rows.append(cells)
    lines.append(C.md_table(head, rows))
    lines += ["", "Max |logits - HF eager logits| and noise (interquartile range / median):", ""]
    rows = []
    for r in data["results"]:
        rows.append([f"{r['batch']}x{r['seq']}"] + [
            f"{r['variants'][n]['max_abs_diff']:.1e} / ±{100 * r['variants'][n]['iqr_rel']:.0f}%"
            for n in names])
    lines.append(C.md_table(head, rows))
    compiled = [n for n in names if n in COMPILED]
    if compiled:
        lines += ["", "First call (compiles for that shape; Inductor's on-disk caches may already be warm), seconds: " + "; ".join(
            f"{LABELS[n]} " + ", ".join(f"{r['variants'][n]['first_call_s']:.1f}"
                                        for r in data["results"]) for n in compiled)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_shape_args(p)
    C.add_common_args(p)
    p.add_argument("--grid", default=None,
                   help=f"batch x seq shapes (default {DEFAULT_GRID}; --quick {QUICK_GRID})")
    p.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(ALL)}")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 9; --quick 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--mask", choices=("ones", "none"), default="ones",
                   help="pass an all-ones attention_mask (as a tokenizer does; default) or none")
    p.add_argument("--tol", type=float, default=1e-3, help="max abs logits difference allowed")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
