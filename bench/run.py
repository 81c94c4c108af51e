"""Run every benchmark, each in its own subprocess, and write ``bench/results/summary.md``.

A benchmark that fails (or is skipped) doesn't stop the others; the summary
says which. Default sizes take about 3 minutes on a 2-core CPU (1-2 more when
Inductor's cache is cold); ``--quick`` is a ~40 s smoke run whose results go to
``bench/results/quick/`` (git-ignored) so they never overwrite the record.

    python bench/run.py                    # the measured record (make bench)
    python bench/run.py --quick            # smoke run
    python bench/run.py --only gpt2_forward,memory --threads 1
    python bench/run.py --check-only       # every script builds and checks; nothing timed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

BENCH = Path(__file__).resolve().parent
SCRIPTS = ("gpt2_forward", "gpt2_generate", "xtransformers_forward", "memory")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run (~1 min), results in quick/")
    p.add_argument("--check-only", action="store_true",
                   help="each script only builds its models and checks outputs")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for every benchmark (default: all cores)")
    p.add_argument("--full", action="store_true", help="GPT-2 small instead of the small default "
                   "(much slower; not within the time budget)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SCRIPTS)}")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = p.parse_args(argv)

    names = args.only.split(",") if args.only else list(SCRIPTS)
    bad = sorted(set(names) - set(SCRIPTS))
    if bad:
        p.error(f"unknown benchmark(s) {bad}; choose from {', '.join(SCRIPTS)}")
    prefix = "quick/" if args.quick else ""
    if args.quick:
        C._atomic_write(C.RESULTS / "quick" / ".gitignore", "*\n")
    busy = cpu_busy()
    if busy is not None and busy > 0.25:
        print(f"warning: {100 * busy:.0f}% of the CPUs are busy with other work; timings will "
              "be noisy (ratios are interleaved, but consider --threads 1 or a quieter "
              "machine)", flush=True)

    status: dict[str, dict[str, Any]] = {}
    start_all = time.time()
    for name in names:
        cmd = [sys.executable, str(BENCH / f"{name}.py")]
        if args.quick:
            cmd.append("--quick")
        if args.check_only:
            cmd.append("--check-only")
        if args.full:
            cmd.append("--full")
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        cmd += ["--out", prefix + name]
        print(f"\n=== {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}",
              flush=True)
        t0 = time.time()
        try:
            rc = subprocess.run(cmd, cwd=C.ROOT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        seconds = time.time() - t0
        status[name] = {"rc": rc, "seconds": seconds, "started": t0}
        print(f"=== {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {seconds:.0f} s", flush=True)
    total = time.time() - start_all

    if args.check_only:
        failed = [n for n, s in status.items() if s["rc"] != 0]
        print(f"\ncheck-only: {len(names) - len(failed)} ok, {len(failed)} failed {failed or ''}")
        return 1 if failed else 0

    md = summary(status, prefix, total, args)
    C._atomic_write(C.RESULTS / prefix / "summary.md", md + "\n")
    print("\n" + md)
    print(f"\nwrote {(C.RESULTS / prefix / 'summary.md').relative_to(C.ROOT)}")
    return 0 if all(s["rc"] == 0 for s in status.values()) else 1


def cpu_busy(seconds: float = 1.0) -> float | None:
    """The fraction of all CPUs' time spent not idle over ``seconds`` (Linux), else None."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError):
        return None
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None


def _load(prefix: str, name: str, started: float) -> dict | None:
    """A result written by this run (not a stale one from an earlier run)."""
    path = C.RESULTS / f"{prefix}{name}.json"
    if not path.exists() or path.stat().st_mtime < started:
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def summary(status: dict[str, dict], prefix: str, total: float, args) -> str:
    env = C.environment(args.threads or os.cpu_count())
    lines = ["# Benchmark summary", "",
             f"{C.env_line(env)}. Total {total / 60:.1f} min"
             + (" (--quick: smoke sizes, not a measurement)" if args.quick else "") + ".",
             "Ratios > 1 mean txdsl is faster (time) / < 1 means it uses less (memory); each "
             "comparison ran in one process with interleaved repetitions. Details: the "
             "per-benchmark `.md` files beside this one.", ""]
    rows = []
    for name, s in status.items():
        data = _load(prefix, name, s["started"])
        state = "ok" if s["rc"] == 0 else f"FAILED ({s['rc']})"
        if data is not None and data.get("skipped"):
            state = "skipped"
        rows.append([name, state, f"{s['seconds']:.0f} s"])
    lines += [C.md_table(["benchmark", "status", "time"], rows), ""]

    for name, s in status.items():
        data = _load(prefix, name, s["started"])
        if data is None or s["rc"] != 0:
            lines += [f"## {name}", "", "No results from this run (failed, see its output).", ""]
            continue
        if data.get("skipped"):
            lines += [f"## {name}", "", f"Skipped: {data.get('reason', '?')}.", ""]
            continue
        lines += SECTIONS[name](data) + [""]
    return "\n".join(lines).rstrip()


def _forward(data: dict) -> list[str]:
    from gpt2_forward import LABELS

    names = list(data["results"][0]["variants"])
    head = ["batch x seq"] + [LABELS[n] for n in names]
    rows = [[f"{r['batch']}x{r['seq']}"] + [
        f"{r['variants'][n]['ratio_vs_hf_eager']:.2f}x" for n in names] for r in data["results"]]
    worst = max(v["max_abs_diff"] for r in data["results"] for v in r["variants"].values())
    s = data["shape"]
    return ["## GPT-2 forward, tokens/s relative to HF eager (same weights)", "",
            f"{s['layers']} layers, d_model {s['d_model']}, {s['heads']} heads, vocab "
            f"{s['vocab']}; all outputs within {worst:.1e} of HF eager's logits.", "",
            C.md_table(head, rows)]


def _generate(data: dict) -> list[str]:
    rows = [[f"{r['batch']}x{r['prompt']}+{r['new']}",
             C.fmt_rate(r["hf"]["tokens_per_s"]), C.fmt_rate(r["txdsl"]["tokens_per_s"]),
             f"{r['ratio_txdsl_vs_hf']:.2f}x"] for r in data["results"]]
    return ["## Greedy generation with KV cache (identical tokens)", "",
            C.md_table(["batch x prompt + new", "HF tok/s", "txdsl tok/s", "txdsl vs HF"], rows)]


def _xt(data: dict) -> list[str]:
    from xtransformers_forward import LABELS

    names = list(data["results"][0]["variants"])
    head = ["batch x seq"] + [LABELS[n] for n in names]
    rows = [[f"{r['batch']}x{r['seq']}"] + [
        f"{r['variants'][n]['ratio_vs_xt_flash']:.2f}x" for n in names] for r in data["results"]]
    return ["## Forward vs x-transformers, tokens/s relative to x-transformers (attn_flash)", "",
            f"Parameters: x-transformers {data['params']['xt_flash']:,}, txdsl matched "
            f"{data['params']['txdsl_matched']:,}, txdsl gpt2.tx "
            f"{data['params']['txdsl_gpt2']:,}.", "", C.md_table(head, rows)]


def _memory(data: dict) -> list[str]:
    def mib(x):
        return "n/a" if x is None else f"{x / 2 ** 20:.1f}"

    def ratio(x):
        return "n/a" if x is None else f"{x:.2f}"

    rows = [[f"{r['batch']}x{r['seq']}", r["mode"],
             f"{mib(r['hf']['tensor_peak_bytes'])} / {mib(r['txdsl']['tensor_peak_bytes'])}",
             ratio(r["ratio_tensor_peak_bytes"]),
             f"{mib(r['hf']['peak_rss_above_baseline_bytes'])} / "
             f"{mib(r['txdsl']['peak_rss_above_baseline_bytes'])}",
             ratio(r["ratio_peak_rss_above_baseline_bytes"]),
             mib(r["txdsl_show"]["activation_bytes"])] for r in data["results"]]
    return ["## Peak forward memory above the weights, MiB (HF / txdsl; ratio txdsl/HF)", "",
            C.md_table(["batch x seq", "mode", "tensors", "ratio", "RSS", "ratio",
                        "txdsl show activations"], rows)]


SECTIONS = {"gpt2_forward": _forward, "gpt2_generate": _generate,
            "xtransformers_forward": _xt, "memory": _memory}


if __name__ == "__main__":
    sys.exit(main())
