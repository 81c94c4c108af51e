"""How attention variants scale with sequence length, against full attention (issue 8, "Measure").

For each entry of ``VARIANTS`` (name, attention spec text, causal) and each
length (512 .. 16384), batch 1, d_model 512, 8 heads, one attention layer:

- ``forward``: inference (``eval``, ``no_grad``), the implementation the
  kernel selection picks for an eager CPU build (the best one registered);
- ``train``: forward + backward (``train`` mode) of the same build.

Each (variant, length, mode) runs in a fresh subprocess: peak memory is the
rise of the resident set during the first pass (Linux: freed heap returned with
``malloc_trim``, the peak reset through ``/proc/self/clear_refs``; elsewhere the
rise of ``ru_maxrss``) over what the process held after building
(``tracemalloc`` doesn't see torch's allocations), and running out of memory
or time ends that variant's row, not the run. The baseline is ``full``,
which the selection lowers to SDPA with ``is_causal`` for causal entries and
plain SDPA for bidirectional ones. A growth exponent is fitted to
log(time) and log(memory) against log(length). The machine's own limits (a
float32 GEMM rate, a copy bandwidth) are measured in the same run.

Entries whose kind isn't registered are skipped with a note (the sparse and
linearized kinds join by being registered); an entry whose arguments are
rejected is reported with the message.

    python bench/attention_scaling.py            # writes bench/results/attention_scaling.*
    python bench/attention_scaling.py --quick    # two short lengths, tiny model (a smoke run)
    python bench/attention_scaling.py --resume   # an interrupted run: keep its rows, do the rest
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SPECS, environment, md_table, write_results  # noqa: E402

H = "{heads}"  # spec texts are formatted with heads=...
# (name, attention spec text, causal). The baseline is "full". An entry whose kind isn't
# installed is skipped with a note; one whose spec is rejected is reported, not a crash.
VARIANTS: list[tuple[str, str, bool]] = [
    ("full (causal)", "full(heads: {heads})", True),
    ("full (bidirectional)", "full(heads: {heads})", False),
    ("local w256", "local(heads: {heads}, window: 256)", True),
    ("block 64", "block(heads: {heads}, block: 64)", False),
    ("bigbird-like sparse", "sparse(heads: {heads}, block: 64, reach: 1, global_tokens: 128, "
                            "random: 3, random_block: 64)", False),
    ("longformer w256", "longformer(heads: {heads}, window: 256, global_tokens: 2)", False),
    # Linearized kinds with 64-token chunks (fla's chunk size): the chunked form keeps one
    # (F, d_v) state per chunk, so at 16384 tokens (d_model 512, 8 heads) linear holds
    # ~35 MB of states per tensor and performer (F = 256) ~135 MB, not 4x that with 16.
    ("linear (causal)", "linear(heads: {heads}, chunk: 64)", True),
    ("performer (causal)", "performer(heads: {heads}, features: 256, chunk: 64)", True),
    ("cosformer (causal)", "cosformer(heads: {heads}, chunk: 64)", True),
    ("linformer k256", "linformer(heads: {heads}, k: 256)", False),
    ("nystrom 64", "nystrom(heads: {heads}, landmarks: 64)", False),
    # Low-rank parametrisation, prototypes and memory compression (issue 9), at their
    # papers' settings where those scale: Liu et al.'s stride 3 in a decoder, Informer's
    # factor 5, Vyas et al.'s (i-)clustered-100 with the top 32 keys, and 64 inducing points
    # / packed tokens as nystrom's 64 landmarks. lowrank shrinks the projections, not the
    # score matrix: it scales as full attention does.
    ("lowrank d/8", "lowrank(heads: {heads}, rank: d_model // 8)", False),
    ("compressed s3 (causal)", "compressed(heads: {heads}, stride: 3)", True),
    ("inducing 64", "inducing(heads: {heads}, m: 64)", False),
    ("luna 64", "luna(heads: {heads}, p: 64)", False),
    ("probsparse c5", "probsparse(heads: {heads}, factor: 5)", False),
    ("clustered 100", "clustered(heads: {heads}, clusters: 100, iterations: 10)", False),
    ("i-clustered 100 top32", "clustered(heads: {heads}, clusters: 100, iterations: 10, "
                              "topk: 32)", False),
    ("lsh 2x64 (causal)", "lsh(heads: {heads}, buckets: 64, rounds: 2, chunk: 64)", True),
    ("routing 8 (causal)", "routing(heads: {heads}, clusters: 8)", True),
    ("topk 64 (causal)", "topk(heads: {heads}, k: 64)", True),
]
LENGTHS = [512, 1024, 2048, 4096, 8192, 16384]
QUICK_LENGTHS = [32, 64]
SLOW_PASS_S = 4.0  # a first pass slower than this: one timed pass instead of --reps


def spec_text(attention: str, causal: bool, d_model: int, heads: int, context: int) -> str:
    stack = "decoder" if causal else "encoder"
    return (f"model bench_attention {{\n  vocab = 16\n  d_model = {d_model}\n  heads = {heads}\n"
            f"  layers = 1\n  context = {context}\n  embedding {{ tokens = vocab }}\n"
            f"  {stack}(layers) {{\n    attention = {attention.format(heads=heads)}\n"
            f"    ffn = mlp(hidden: {d_model})\n  }}\n  head = lm(tied: true)\n}}\n")


def kind_of(attention: str) -> str:
    return attention.split("(", 1)[0].strip()


# ------------------------------------------------------------- one measurement (child)


def maxrss_bytes() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024


def _status_kib(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> int | None:
    """Return freed heap to the OS and reset the peak RSS (Linux: ``clear_refs`` 5), so the
    next reading of ``VmHWM`` is the peak of what runs after this; returns the RSS now
    (bytes), or ``None`` where that isn't possible (then ``ru_maxrss`` is used)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return rss * 1024 if rss is not None else None


def peak_rss_bytes() -> int:
    hwm = _status_kib("VmHWM")
    return hwm * 1024 if hwm is not None else maxrss_bytes()


def child(cfg: dict) -> dict:
    """Build one attention layer, then measure peak memory of one pass and its time."""
    import torch

    import txdsl
    from txdsl.sdk import AttentionMask
    from txdsl.sdk.attention import Attention

    torch.set_num_threads(cfg["threads"]) if cfg["threads"] else None
    text = spec_text(cfg["attention"], cfg["causal"], cfg["d_model"], cfg["heads"], cfg["T"])
    built = txdsl.build(text, backend="eager", seed=0, base_dir=str(SPECS), progress=False)
    attn = next(m for m in built.module.modules() if isinstance(m, Attention))
    impl = next((c.impl for c in getattr(built.plan, "choices", []) if getattr(c, "family", "")
                 == "attention"), type(attn).__name__)
    train = cfg["mode"] == "train"
    start_max = maxrss_bytes()
    attn.train(train)
    x = torch.randn(1, cfg["T"], cfg["d_model"], requires_grad=train)
    mask = AttentionMask(causal=cfg["causal"])

    def run():
        if train:
            attn(x, mask=mask).sum().backward()
            x.grad = None
            for p in attn.parameters():
                p.grad = None
        else:
            with torch.no_grad():
                attn(x, mask=mask)

    base = reset_peak_rss()
    start = time.perf_counter()
    run()  # the first pass: its high-water mark is the peak
    first = time.perf_counter() - start
    peak = max(0, peak_rss_bytes() - base) if base is not None else maxrss_bytes() - start_max
    times = []
    # a pass over SLOW_PASS_S seconds is timed once (long rows fit the run; reported as reps)
    reps = cfg["reps"] if first < SLOW_PASS_S else 1
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median_s": times[len(times) // 2], "min_s": times[0], "peak_bytes": peak,
            "impl": str(impl), "reps": reps}


# ----------------------------------------------------------------- the run (parent)


def machine_limits(quick: bool) -> dict:
    """A float32 GEMM rate (GFLOP/s) and a copy bandwidth (GB/s, read + write)."""
    import torch

    n = 256 if quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    reps = 3
    for _ in range(reps):
        a @ b
    gemm = 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9
    src = torch.randn((1 << 20) if quick else (1 << 26))  # 4 MiB / 256 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    start = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    copy = 2 * src.numel() * 4 * reps / (time.perf_counter() - start) / 1e9
    return {"gemm_gflops": round(gemm, 1), "copy_gbps": round(copy, 2), "gemm_n": n}


def registered_kinds() -> set[str]:
    from txdsl.plugins import get_registry

    return set(get_registry().kinds("attention"))


def measure(cfg: dict, timeout: float) -> dict:
    try:
        res = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        killed = res.returncode < 0 or "MemoryError" in res.stderr or "out of memory" in last
        return {"error": ("out of memory: " if killed else "") + last[-300:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def fit_exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(y) on log(length)."""
    pts = [(math.log(t), math.log(y)) for t, y in points if y and y > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    var = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / var if var else None


def check_spec(text: str) -> str | None:
    import txdsl

    try:
        txdsl.parse(text, base_dir=str(SPECS))
    except Exception as exc:  # a spec error: report it, skip the entry
        return str(exc).strip().splitlines()[0][:200]
    return None


def results_name(args: argparse.Namespace) -> str:
    return args.name or ("attention_scaling_quick" if args.quick else "attention_scaling")


def previous_run(args: argparse.Namespace, lengths: list[int]) -> dict | None:
    """``--resume``: the partial record of an interrupted run with the same lengths."""
    path = RESULTS / f"{results_name(args)}.json"
    if not args.resume or not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("lengths") != lengths or data.get("quick") != args.quick:
        raise SystemExit(f"--resume: {path} was measured at other lengths; rerun without it")
    for v in data["variants"]:  # JSON object keys are strings: lengths back to ints
        for mode in ("forward", "train"):
            v[mode] = {int(T): r for T, r in v[mode].items()}
    return data


def save(args: argparse.Namespace, data: dict) -> tuple[Path, Path]:
    """Write the record so far (after every row: an interrupted run keeps its rows)."""
    return write_results(results_name(args), data, markdown(data))


def run(args: argparse.Namespace) -> dict:
    quick = args.quick
    lengths = QUICK_LENGTHS if quick else args.lengths
    d_model, heads = (32, 4) if quick else (512, 8)
    kinds = registered_kinds()
    out: dict = previous_run(args, lengths) or {
        "environment": environment(args.threads), "machine": machine_limits(quick),
        "d_model": d_model, "heads": heads, "batch": 1, "lengths": lengths,
        "quick": quick, "variants": [], "skipped": []}
    done = {v["name"] for v in out["variants"]} | {s["name"] for s in out["skipped"]}
    for name, attention, causal in VARIANTS:
        if args.only and not any(o in name for o in args.only):
            continue
        if name in done:
            print(f"{name:24s} kept from the interrupted run (--resume)", flush=True)
            continue
        kind = kind_of(attention)
        if kind not in kinds:
            out["skipped"].append({"name": name, "why": f"kind '{kind}' is not registered"})
            continue
        rejected = check_spec(spec_text(attention, causal, d_model, heads, max(lengths)))
        if rejected:
            out["skipped"].append({"name": name, "why": f"spec rejected: {rejected}"})
            continue
        row = {"name": name, "attention": attention.format(heads=heads), "causal": causal,
               "forward": {}, "train": {}}
        for mode in ("forward", "train"):
            for T in lengths:
                cfg = {"attention": attention, "causal": causal, "d_model": d_model,
                       "heads": heads, "T": T, "mode": mode, "threads": args.threads,
                       "reps": 1 if quick else args.reps}
                got = measure(cfg, args.timeout)
                row[mode][T] = got
                print(f"{name:24s} {mode:7s} T={T:6d} "
                      + (got["error"] if "error" in got else
                         f"{got['median_s'] * 1e3:9.2f} ms  {got['peak_bytes'] / 2**20:8.1f} MiB"),
                      flush=True)
                if "error" in got:
                    break  # longer sequences won't fit either: the row ends here
            ok = [(T, r) for T, r in row[mode].items() if "error" not in r]
            row[f"{mode}_time_exponent"] = fit_exponent([(T, r["median_s"]) for T, r in ok])
            row[f"{mode}_memory_exponent"] = fit_exponent([(T, r["peak_bytes"]) for T, r in ok])
        out["variants"].append(row)
        order = {name: i for i, (name, _, _) in enumerate(VARIANTS)}  # a resumed row in place
        out["variants"].sort(key=lambda v: order.get(v["name"], len(order)))
        save(args, out)
    return out


# ----------------------------------------------------------------------- reports


def markdown(data: dict) -> str:
    lengths = data["lengths"]
    baseline = {c: next((v for v in data["variants"] if v["name"].startswith("full")
                         and v["causal"] == c), None) for c in (True, False)}

    def cell(v: dict, mode: str, T: int) -> str:
        r = v[mode].get(T)
        if r is None:
            return "-"
        if "error" in r:
            return "OOM" if r["error"].startswith("out of memory") else \
                "timeout" if r["error"].startswith("timed out") else "fail"
        base = baseline[v["causal"]]
        b = base[mode].get(T) if base else None
        ratio = (f" ({b['median_s'] / r['median_s']:.2f}x)" if b and "error" not in b
                 and base is not v else "")
        return f"{r['median_s'] * 1e3:.1f} ms / {r['peak_bytes'] / 2**20:.0f} MiB{ratio}"

    m, env = data["machine"], data["environment"]
    lines = [f"# Attention scaling (batch 1, d_model {data['d_model']}, {data['heads']} heads, "
             f"one layer{', QUICK smoke run: not a measurement' if data['quick'] else ''})", "",
             f"Machine: {env.get('cpu')}, {env.get('torch_threads')}"
             f" threads; float32 GEMM {m['gemm_gflops']} GFLOP/s (n={m['gemm_n']}), copy "
             f"{m['copy_gbps']} GB/s.", "",
             "Cells: median time / peak memory rise (resident set, Linux clear_refs) (speed vs full of the same "
             "direction). Exponents: fitted slope of log time and log memory vs log length. "
             f"A pass slower than {SLOW_PASS_S:.0f} s is timed once; 'timeout': the "
             "measurement exceeded the run's --timeout (the row ends there).", ""]
    for mode in ("forward", "train"):
        lines += [f"## {'Inference forward' if mode == 'forward' else 'Training forward+backward'}",
                  ""]
        rows = [[v["name"]] + [cell(v, mode, T) for T in lengths]
                + [_fmt(v[f"{mode}_time_exponent"]), _fmt(v[f"{mode}_memory_exponent"])]
                for v in data["variants"]]
        lines += [md_table(["variant"] + [str(T) for T in lengths] + ["time exp", "mem exp"],
                           rows), ""]
    if data["skipped"]:
        lines += ["Skipped:", ""] + [f"- {s['name']}: {s['why']}" for s in data["skipped"]]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def plot(data: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extra pins matplotlib; without it, no figure
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, mode in zip(axes, ("forward", "train")):
        for v in data["variants"]:
            pts = [(T, r["median_s"]) for T, r in v[mode].items() if "error" not in r]
            if pts:
                ax.loglog(*zip(*pts), marker="o", label=v["name"])
        ax.set_xlabel("sequence length")
        ax.set_ylabel("seconds")
        ax.set_title("inference forward" if mode == "forward" else "training forward+backward")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="two short lengths, tiny model")
    p.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    p.add_argument("--reps", type=int, default=3, help="timed passes per measurement")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    p.add_argument("--only", nargs="+", help="only entries whose name contains one of these")
    p.add_argument("--name", default=None, help="results file stem (default "
                                                "attention_scaling, or _quick with --quick)")
    p.add_argument("--resume", action="store_true", help="keep the rows of an interrupted run "
                                                          "(its JSON) and measure the rest")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    data = run(args)
    name = results_name(args)
    js, md = save(args, data)
    png = plot(data, RESULTS / f"{name}.png")
    for s in data["skipped"]:
        print(f"skipped {s['name']}: {s['why']}")
    print(f"wrote {js}, {md}" + (f", {png}" if png else " (no matplotlib: no figure)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
