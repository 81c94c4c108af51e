"""Peak memory of one forward pass: txdsl's GPT-2 vs Hugging Face ``GPT2LMHeadModel``.

Each (implementation, batch x seq, mode) runs in a fresh subprocess, so one
measurement cannot inherit another's allocator state. In the worker:

1. build the model (eager; txdsl's default ``sdpa`` kernel, HF's default ``sdpa``
   attention) and the inputs, run one tiny forward (loads kernels, thread pools);
2. record the resident set (RSS) and reset the kernel's high-water mark
   (``/proc/self/clear_refs`` = 5; without it, ``ru_maxrss`` is used and the
   build's own peak may hide the forward's);
3. run the forward; **peak RSS above the baseline** = ``VmHWM`` - baseline;
4. run it again under ``torch.profiler`` (``profile_memory=True``) and take the
   **peak of live tensor bytes** above the weights from the memory timeline:
   exact tensor accounting, free of malloc's caching.

Modes: ``inference`` (``torch.inference_mode()``: nothing is kept, the peak is a
transient) and ``grad`` (autograd on, eval mode: the forward keeps what the
backward would need; compare with ``txdsl show``'s ``activation_bytes``, a
training-activation estimate that leaves out the logits). ``txdsl show --json``'s
``kv_cache_bytes`` (a full-length cache) is listed for scale.

    python bench/memory.py
    python bench/memory.py --grid 1x256,8x256 --modes grad
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

DEFAULT_GRID = "4x64,4x128,4x256"
QUICK_GRID = "2x64"
CHECK_GRID = "1x16"
MiB = 2 ** 20


# ---------------------------------------------------------------- the worker


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _profiled_peak(forward) -> int | None:
    """Peak live tensor bytes above the start of ``forward()``, from the profiler's timeline."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    try:
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                     record_shapes=True, with_stack=True) as prof:
            out = forward()
            del out
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(
            torch.device("cpu"))
        totals = [sum(s) for s in sizes]
        return int(max(totals) - totals[0]) if totals else None
    except Exception as exc:  # noqa: BLE001 - an internal API: degrade, don't fail
        print(f"profiler timeline unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def worker(args: argparse.Namespace) -> int:
    import gc

    import torch

    C.set_threads(args.threads)
    shape = C.shape_from_args(args)
    if args.impl == "hf":
        model = C.hf_gpt2(shape, seed=args.seed)
    else:
        model = C.build_txdsl(shape, seed=args.seed, backend="eager").module
    weights = sum(p.numel() * p.element_size() for p in set(model.parameters()))
    ids = C.token_ids(args.batch, args.seq, shape.vocab, seed=args.seed + 1)
    mask = torch.ones_like(ids)
    ctx = torch.inference_mode if args.mode == "inference" else torch.enable_grad
    # HF's forward builds and returns a KV cache by default (config.use_cache); txdsl's
    # only with use_cache=True. Like for like: no cache unless --use-cache (both then).
    kw = {"use_cache": args.use_cache}

    def forward():
        with ctx():
            out = model(input_ids=ids, attention_mask=mask, **kw)
            return out.logits, out.past_key_values

    small = ids[:, :8]
    with ctx():
        model(input_ids=small, attention_mask=torch.ones_like(small), **kw)
    gc.collect()
    baseline = _rss_bytes()
    reset = _reset_hwm()
    before_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    out = forward()
    seconds = time.perf_counter() - start
    peak = _hwm_bytes() if reset else None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if peak is None:
        peak = maxrss
    del out
    gc.collect()
    tensor_peak = None if args.no_profiler else _profiled_peak(forward)
    print(json.dumps({
        "impl": args.impl, "batch": args.batch, "seq": args.seq, "mode": args.mode,
        "weights_bytes": weights, "baseline_rss_bytes": baseline,
        "peak_rss_above_baseline_bytes": max(0, peak - baseline),
        "hwm_reset": reset, "maxrss_before_bytes": before_maxrss,
        "tensor_peak_bytes": tensor_peak, "forward_s": seconds,
        "torch_threads": torch.get_num_threads(), "use_cache": args.use_cache,
    }))
    return 0


# ---------------------------------------------------------------- the driver


def txdsl_show(shape: C.GPT2Shape, batch: int, seq: int) -> dict[str, Any]:
    """``txdsl show --json`` of the benchmarked spec (via a temporary file)."""
    text = shape.spec().replace('import "gpt2.tx"', f'import "{(C.SPECS / "gpt2.tx").as_posix()}"')
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench_gpt2.tx"
        path.write_text(text, encoding="utf-8")
        cmd = [sys.executable, "-m", "txdsl", "show", str(path), "--json", "--batch", str(batch),
               "--seq-len", str(seq)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=C.ROOT, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"txdsl show failed: {res.stderr.strip()}")
    out = json.loads(res.stdout)
    return {k: out[k] for k in ("params", "activation_bytes", "kv_cache_bytes", "flops_per_token")}


def measure(args: argparse.Namespace, impl: str, batch: int, seq: int, mode: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--impl", impl,
           "--batch", str(batch), "--seq", str(seq), "--mode", mode, "--seed", str(args.seed),
           "--layers", str(args.layers), "--d-model", str(args.d_model),
           "--heads", str(args.heads), "--vocab", str(args.vocab),
           "--context", str(args.context)]
    if args.full:
        cmd.append("--full")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.no_profiler:
        cmd.append("--no-profiler")
    if args.use_cache:
        cmd.append("--use-cache")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"worker {impl} {batch}x{seq} {mode} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def parse_grid(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.strip().lower().split("x")) for item in text.split(",")]  # type: ignore[misc]


def run(args: argparse.Namespace) -> int:
    shape = C.shape_from_args(args)
    grid = parse_grid(args.grid or (CHECK_GRID if args.check_only
                                    else QUICK_GRID if args.quick else DEFAULT_GRID))
    modes = args.modes.split(",")
    threads = args.threads or os.cpu_count()
    print(f"memory: {shape}, grid {grid}, modes {modes}, one subprocess per measurement",
          flush=True)
    rows = []
    for b, t in grid:
        est = txdsl_show(shape, b, t)
        for mode in modes:
            r: dict[str, Any] = {"batch": b, "seq": t, "mode": mode, "txdsl_show": est}
            for impl in ("hf", "txdsl"):
                r[impl] = measure(args, impl, b, t, mode)
            for key in ("peak_rss_above_baseline_bytes", "tensor_peak_bytes"):
                h, x = r["hf"][key], r["txdsl"][key]
                r[f"ratio_{key}"] = (x / h) if h and x is not None else None
            rows.append(r)
            print(f"  {b}x{t} {mode}: tensors hf {_mib(r['hf']['tensor_peak_bytes'])} "
                  f"txdsl {_mib(r['txdsl']['tensor_peak_bytes'])}; RSS hf "
                  f"{_mib(r['hf']['peak_rss_above_baseline_bytes'])} txdsl "
                  f"{_mib(r['txdsl']['peak_rss_above_baseline_bytes'])}", flush=True)
    if args.check_only:
        print("check-only: the workers ran; nothing written")
        return 0
    env = C.environment(threads)
    data = {
        "benchmark": "memory",
        "what": "peak memory of one forward above the steady state (weights, inputs), fresh "
                "process each; ratio = txdsl / HF (< 1: txdsl uses less)",
        "shape": shape.__dict__, "use_cache": args.use_cache, "env": env, "results": rows,
    }
    md = markdown(data)
    js, mdp = C.write_results(args.out or "memory", data, md)
    print()
    print(md)
    print(f"\nwrote {js.relative_to(C.ROOT)} and {mdp.relative_to(C.ROOT)}")
    return 0


def _mib(x: int | None) -> str:
    return "n/a" if x is None else f"{x / MiB:.1f} MiB"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def markdown(data: dict) -> str:
    s = data["shape"]
    first = data["results"][0]
    lines = [
        "## Peak forward memory: txdsl vs Hugging Face",
        "",
        f"Model: {s['layers']} layers, d_model {s['d_model']}, vocab {s['vocab']} "
        f"(weights {_mib(first['hf']['weights_bytes'])}). {C.env_line(data['env'])}. "
        "Fresh process per cell; memory above the steady state (weights and inputs loaded); "
        + ("both build a KV cache (use_cache=True). " if data["use_cache"] else
           "no KV cache built (HF's default use_cache=True turned off, like for like). ")
        +
        "Ratio = txdsl / HF (< 1: txdsl uses less). `txdsl show` estimates: "
        "`activation_bytes` (what a training step keeps, logits excluded) and "
        "`kv_cache_bytes` (a cache of that length).",
        "",
    ]
    rows = []
    for r in data["results"]:
        e = r["txdsl_show"]
        rows.append([
            f"{r['batch']}x{r['seq']}", r["mode"],
            _mib(r["hf"]["tensor_peak_bytes"]), _mib(r["txdsl"]["tensor_peak_bytes"]),
            _ratio(r["ratio_tensor_peak_bytes"]),
            _mib(r["hf"]["peak_rss_above_baseline_bytes"]),
            _mib(r["txdsl"]["peak_rss_above_baseline_bytes"]),
            _ratio(r["ratio_peak_rss_above_baseline_bytes"]),
            _mib(e["activation_bytes"]), _mib(e["kv_cache_bytes"]),
        ])
    lines.append(C.md_table(
        ["batch x seq", "mode", "HF tensors", "txdsl tensors", "ratio", "HF RSS", "txdsl RSS",
         "ratio", "show: activations", "show: KV cache"], rows))
    sizes = ", ".join(f"{_mib(r['batch'] * r['seq'] * s['vocab'] * 4)} at {r['batch']}x{r['seq']}"
                      for r in data["results"] if r["mode"] == data["results"][0]["mode"])
    lines += ["", f"For scale, the float32 logits alone (vocab {s['vocab']}): {sizes}.",
              "Tensors: peak live tensor bytes from torch.profiler's memory timeline; "
              "RSS: VmHWM above the pre-forward RSS (malloc caching and thread stacks included)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_shape_args(p)
    C.add_common_args(p)
    p.add_argument("--grid", default=None, help=f"batch x seq (default {DEFAULT_GRID})")
    p.add_argument("--modes", default="inference,grad", help="inference, grad, or both")
    p.add_argument("--no-profiler", action="store_true", help="RSS only")
    p.add_argument("--use-cache", action="store_true",
                   help="both build a KV cache in the forward (HF's default; txdsl use_cache=True)")
    w = p.add_argument_group("worker (internal)")
    w.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    w.add_argument("--impl", choices=("hf", "txdsl"), help=argparse.SUPPRESS)
    w.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    w.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    w.add_argument("--mode", choices=("inference", "grad"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
