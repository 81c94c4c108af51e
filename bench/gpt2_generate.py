"""Greedy generation with a KV cache: txdsl ``model.generate`` vs Hugging Face ``generate``.

Same weights (HF's initialisation copied into the txdsl build), same prompt,
``do_sample=False``, no end-of-sequence token (every run decodes exactly
``new`` tokens). Before timing, the generated token ids must be identical.
Throughput is ``batch * new / median seconds`` of the whole call (prefill
included), interleaved repetitions; ratio > 1: txdsl is faster.

Both run eagerly with their default attention (``sdpa``); decoding steps of
one token are dominated by per-step overhead at this size (Python, cache
handling, small matmuls), which is what this measures. Besides time, each
case records the bytes the allocator hands out per generated token (torch
profiler, ``profile_memory``): a cache that grows by concatenation copies
itself at every step, a preallocated one does not.

Before/after a change to txdsl, run the same script against the old tree in
the same session (``--label``; the old tree first on ``PYTHONPATH``, with its
``plugins/``), and compare the ratios to HF, which are measured in each run.

    python bench/gpt2_generate.py                   # default small GPT-2
    python bench/gpt2_generate.py --cases 1x32+128,8x32+32
    python bench/gpt2_generate.py --check-only      # identical tokens, no timing
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


def run(args: argparse.Namespace) -> int:
    import torch

    threads = C.set_threads(args.threads)
    shape = C.shape_from_args(args)
    cases = parse_cases(args.cases or (CHECK_CASES if args.check_only
                                       else QUICK_CASES if args.quick else DEFAULT_CASES))
    for b, p, n in cases:
        if p + n > shape.context:
            raise SystemExit(f"prompt {p} + new {n} exceeds the context ({shape.context})")
    reps = args.reps or (2 if args.quick else 7)
    print(f"gpt2_generate: {shape}, {threads} thread(s), cases {cases}", flush=True)

    hf = C.hf_gpt2(shape, seed=args.seed, attn="sdpa")
    built = C.build_txdsl(shape, seed=args.seed, backend="eager")
    C.copy_hf_to_txdsl(hf, built.module)
    tx = built.module

    def hf_generate(ids, mask, new):
        return hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                           min_new_tokens=new, do_sample=False, num_beams=1,
                           pad_token_id=0, eos_token_id=None)

    def tx_generate(ids, mask, new):
        return tx.generate(ids, new, attention_mask=mask)

    rows = []
    with torch.inference_mode():
        for b, p, n in cases:
            ids = C.token_ids(b, p, shape.vocab, seed=args.seed + 2)
            mask = torch.ones_like(ids)
            expected, got = hf_generate(ids, mask, n), tx_generate(ids, mask, n)
            if expected.shape != got.shape or not torch.equal(expected, got):
                same = (expected == got).all(dim=0).long().cumprod(0).sum().item() \
                    if expected.shape == got.shape else 0
                raise AssertionError(
                    f"generated tokens differ at {b}x{p}+{n} (shapes {tuple(expected.shape)} vs "
                    f"{tuple(got.shape)}; first {same - p if same else 0} new tokens agree)")
            print(f"  {b}x{p}+{n}: identical tokens ({b * n} generated)", flush=True)
            entry: dict[str, Any] = {"batch": b, "prompt": p, "new": n, "identical": True}
            if not args.check_only:
                times = C.interleaved({"hf": functools.partial(hf_generate, ids, mask, n),
                                       "txdsl": functools.partial(tx_generate, ids, mask, n)},
                                      reps=reps, warmup=1)
                for name in ("hf", "txdsl"):
                    s = C.summarize(times[name])
                    entry[name] = {**s, "tokens_per_s": b * n / s["median_s"],
                                   "ms_per_step": 1000 * s["median_s"] / n}
                entry["ratio_txdsl_vs_hf"] = (entry["hf"]["median_s"]
                                              / entry["txdsl"]["median_s"])
                for name, fn in (("hf", hf_generate), ("txdsl", tx_generate)):
                    entry[name]["alloc_bytes_per_token"] = allocated_per_token(
                        functools.partial(fn, ids, mask, n), b * n)
                print(f"  txdsl/hf {entry['ratio_txdsl_vs_hf']:.2f}x", flush=True)
            rows.append(entry)

    if args.check_only:
        print("check-only: txdsl generates the same tokens as Hugging Face; nothing timed")
        return 0

    env = C.environment(threads)
    data = {
        "benchmark": "gpt2_generate",
        "what": "greedy generate tokens/s (batch*new / median seconds, prefill included); "
                "ratio = HF time / txdsl time (>1 = txdsl faster)",
        "label": args.label, "txdsl_from": str(Path(C.txdsl_path()).parent),
        "shape": shape.__dict__, "reps": reps, "env": env, "params": C.param_count(hf),
        "results": rows,
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
    lines = [
        "## GPT-2 greedy generation (KV cache): txdsl vs Hugging Face (same weights)"
        + (f" [{data['label']}]" if data.get("label") else ""),
        "",
        f"Model: {s['layers']} layers, d_model {s['d_model']}, {s['heads']} heads, "
        f"vocab {s['vocab']} ({data['params']:,} parameters). {C.env_line(data['env'])}. "
        f"Median of {data['reps']} interleaved runs. Generated tokens identical in every case.",
        "",
    ]
    rows = [[f"{r['batch']}", r["prompt"], r["new"],
             f"{C.fmt_rate(r['hf']['tokens_per_s'])} ({r['hf']['ms_per_step']:.1f} ms/step)",
             f"{C.fmt_rate(r['txdsl']['tokens_per_s'])} ({r['txdsl']['ms_per_step']:.1f} ms/step)",
             f"{r['ratio_txdsl_vs_hf']:.2f}x",
             f"{r['hf'].get('alloc_bytes_per_token', 0) / 1024:,.0f}",
             f"{r['txdsl'].get('alloc_bytes_per_token', 0) / 1024:,.0f}"] for r in data["results"]]
    lines.append(C.md_table(["batch", "prompt", "new tokens", "HF generate tok/s",
                             "txdsl generate tok/s", "txdsl vs HF", "HF KiB alloc/token",
                             "txdsl KiB alloc/token"], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_shape_args(p)
    C.add_common_args(p)
    p.add_argument("--cases", default=None,
                   help=f"BxP+N: batch, prompt length, new tokens (default {DEFAULT_CASES})")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 7; --quick 2)")
    p.add_argument("--label", default="", help="a name for this run (e.g. before, after)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
