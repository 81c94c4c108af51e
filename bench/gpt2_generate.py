"""Greedy generation with a KV cache: txdsl ``generate`` vs Hugging Face ``generate``.

Same weights (HF's initialisation copied into the txdsl build), same prompt,
``do_sample=False``, no end-of-sequence token (every run decodes exactly
``new`` tokens). Before timing, the generated token ids must be identical.
Throughput is ``batch * new / median seconds`` of the whole call (prefill
included), interleaved repetitions; ratio > 1: txdsl is faster.

Variants (``--variants``, Hugging Face's default ``generate`` always first,
the reference every other must match token for token):

- ``hf``: ``GPT2LMHeadModel.generate``, eager, SDPA attention;
- ``hf-static-compiled``: Hugging Face's own fastest documented path,
  ``generate(..., cache_implementation="static")`` with ``model.forward =
  torch.compile(model.forward)``;
- ``txdsl``: the eager build's ``generate`` (eager decode step);
- ``txdsl-inductor``: the inductor build's ``Built.generate``, whose decode
  step is compiled once (``txdsl.runtime.decode``).

Compiled variants are compiled by the token check, before any timing.
``--quick`` runs the eager variants only (a smoke run of the script); a
plain ``--check-only`` checks all four. Decoding steps of one token are
dominated by per-step overhead at this size (Python, cache handling, small
matmuls), which is what this measures. Besides time, each
case records the bytes the allocator hands out per generated token (torch
profiler, ``profile_memory``): a cache that grows by concatenation copies
itself at every step, a preallocated one does not.

Before/after a change to txdsl, run the same script against the old tree in
the same session (``--label``; the old tree first on ``PYTHONPATH``, with its
``plugins/``), and compare the ratios to HF, which are measured in each run.

    python bench/gpt2_generate.py                   # default small GPT-2
    python bench/gpt2_generate.py --cases 1x32+128,8x32+32
    python bench/gpt2_generate.py --check-only      # identical tokens, no timing
    python bench/gpt2_generate.py --variants hf,txdsl-inductor --cases 1x16+128
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

DEFAULT_CASES = "1x16+64,1x128+128,4x32+64"
QUICK_CASES = "1x16+16"
CHECK_CASES = "2x8+8"


def parse_cases(text: str) -> list[tuple[int, int, int]]:
    """``BxP+N``: batch B, prompt length P, N new tokens."""
    out = []
    for item in text.split(","):
        bp, _, n = item.strip().partition("+")
        b, _, p = bp.lower().partition("x")
        out.append((int(b), int(p), int(n)))
    return out


def allocated_per_token(fn, tokens: int) -> float:
    """Bytes the CPU allocator hands out during ``fn()``, per generated token."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(max(e.self_cpu_memory_usage, 0) for e in prof.events()) / tokens


VARIANTS = {  # name -> what the table calls it
    "hf": "HF generate",
    "hf-static-compiled": "HF static cache + torch.compile",
    "txdsl": "txdsl eager",
    "txdsl-inductor": "txdsl inductor (compiled step)",
}
EAGER_VARIANTS = "hf,txdsl"


def make_variants(names: list[str], shape, seed: int) -> dict[str, Any]:
    """``name -> generate(ids, mask, new)`` with the same weights (HF's initialisation)."""
    import torch

    hf = C.hf_gpt2(shape, seed=seed, attn="sdpa")
    fns: dict[str, Any] = {}

    def hf_call(model, **extra):
        def call(ids, mask, new):
            return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                                  min_new_tokens=new, do_sample=False, num_beams=1,
                                  pad_token_id=0, eos_token_id=None, **extra)
        return call

    if "hf" in names:
        fns["hf"] = hf_call(hf)
    if "hf-static-compiled" in names:
        # Hugging Face's own fastest documented decode path: a static cache and a compiled
        # forward (docs: "LLM inference optimization", static kv-cache and torch.compile).
        hf_static = C.hf_gpt2(shape, seed=seed, attn="sdpa")
        hf_static.forward = torch.compile(hf_static.forward)
        fns["hf-static-compiled"] = hf_call(hf_static, cache_implementation="static")
    for name, backend in (("txdsl", "eager"), ("txdsl-inductor", "inductor")):
        if name in names:
            built = C.build_txdsl(shape, seed=seed, backend=backend,
                                  options={"warmup": False} if backend == "inductor" else None)
            C.copy_hf_to_txdsl(hf, built.module)
            fns[name] = (lambda b: lambda ids, mask, new: b.generate(ids, new,
                                                                     attention_mask=mask))(built)
    return fns


def run(args: argparse.Namespace) -> int:
    import torch

    threads = C.set_threads(args.threads)
    shape = C.shape_from_args(args)
    cases = parse_cases(args.cases or (CHECK_CASES if args.check_only
                                       else QUICK_CASES if args.quick else DEFAULT_CASES))
    for b, p, n in cases:
        if p + n > shape.context:
            raise SystemExit(f"prompt {p} + new {n} exceeds the context ({shape.context})")
    names = (args.variants or (EAGER_VARIANTS if args.quick else ",".join(VARIANTS))).split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or "hf" not in names:
        raise SystemExit(f"--variants: {', '.join(unknown) or 'hf is required (the reference)'}"
                         f"; known: {', '.join(VARIANTS)}")
    reps = args.reps or (2 if args.quick else 7)
    print(f"gpt2_generate: {shape}, {threads} thread(s), cases {cases}, variants {names}",
          flush=True)
    fns = make_variants(names, shape, args.seed)

    rows = []
    with torch.inference_mode():
        for b, p, n in cases:
            ids = C.token_ids(b, p, shape.vocab, seed=args.seed + 2)
            mask = torch.ones_like(ids)
            expected = fns["hf"](ids, mask, n)
            for name in [x for x in names if x != "hf"]:
                got = fns[name](ids, mask, n)  # also compiles a compiled variant, untimed
                if expected.shape != got.shape or not torch.equal(expected, got):
                    same = (expected == got).all(dim=0).long().cumprod(0).sum().item() \
                        if expected.shape == got.shape else 0
                    raise AssertionError(
                        f"{VARIANTS[name]}: generated tokens differ from HF at {b}x{p}+{n} "
                        f"(shapes {tuple(expected.shape)} vs {tuple(got.shape)}; first "
                        f"{same - p if same else 0} new tokens agree)")
            print(f"  {b}x{p}+{n}: identical tokens ({b * n} generated) from "
                  f"{', '.join(VARIANTS[x] for x in names)}", flush=True)
            entry: dict[str, Any] = {"batch": b, "prompt": p, "new": n, "identical": True}
            if not args.check_only:
                times = C.interleaved({x: functools.partial(fns[x], ids, mask, n)
                                       for x in names}, reps=reps, warmup=1)
                for name in names:
                    s = C.summarize(times[name])
                    entry[name] = {**s, "tokens_per_s": b * n / s["median_s"],
                                   "ms_per_step": 1000 * s["median_s"] / n,
                                   "vs_hf": C.summarize(times["hf"])["median_s"]
                                   / s["median_s"]}
                for name in names:
                    entry[name]["alloc_bytes_per_token"] = allocated_per_token(
                        functools.partial(fns[name], ids, mask, n), b * n)
                print("  " + ", ".join(f"{x} {entry[x]['vs_hf']:.2f}x HF" for x in names),
                      flush=True)
            rows.append(entry)

    if args.check_only:
        print("check-only: every variant generates the same tokens as Hugging Face; "
              "nothing timed")
        return 0

    env = C.environment(threads)
    data = {
        "benchmark": "gpt2_generate",
        "what": "greedy generate tokens/s (batch*new / median seconds, prefill included); "
                "vs_hf = HF generate time / variant time (>1 = faster than HF generate)",
        "label": args.label, "txdsl_from": str(Path(C.txdsl_path()).parent),
        "shape": shape.__dict__, "reps": reps, "env": env,
        "params": C.param_count(C.hf_gpt2(shape, seed=args.seed)),
        "variants": {x: VARIANTS[x] for x in names}, "results": rows,
    }
    md = markdown(data)
    name = args.out or ("gpt2_generate" + (f"_{args.label}" if args.label else ""))
    js, mdp = C.write_results(name, data, md)
    print()
    print(md)
    print(f"\nwrote {js.relative_to(C.ROOT)} and {mdp.relative_to(C.ROOT)}")
    return 0


def markdown(data: dict) -> str:
    s = data["shape"]
    names = list(data["variants"])
    lines = [
        "## GPT-2 greedy generation (KV cache): txdsl vs Hugging Face (same weights)"
        + (f" [{data['label']}]" if data.get("label") else ""),
        "",
        f"Model: {s['layers']} layers, d_model {s['d_model']}, {s['heads']} heads, "
        f"vocab {s['vocab']} ({data['params']:,} parameters). {C.env_line(data['env'])}. "
        f"Median of {data['reps']} interleaved runs (compiled variants compiled before "
        "timing). Generated tokens identical in every case. Cells: tokens/s (ms per step; "
        "speed vs HF generate; KiB allocated per token).",
        "",
    ]
    rows = [[f"{r['batch']}", r["prompt"], r["new"]]
            + [f"{C.fmt_rate(r[x]['tokens_per_s'])} ({r[x]['ms_per_step']:.1f} ms; "
               f"{r[x]['vs_hf']:.2f}x; {r[x].get('alloc_bytes_per_token', 0) / 1024:,.0f} KiB)"
               for x in names] for r in data["results"]]
    lines.append(C.md_table(["batch", "prompt", "new tokens"]
                            + [data["variants"][x] for x in names], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_shape_args(p)
    C.add_common_args(p)
    p.add_argument("--cases", default=None,
                   help=f"BxP+N: batch, prompt length, new tokens (default {DEFAULT_CASES})")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 7; --quick 2)")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated, hf first (default: all of {','.join(VARIANTS)}; "
                        f"--quick: {EAGER_VARIANTS}, nothing compiled)")
    p.add_argument("--label", default="", help="a name for this run (e.g. before, after)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
