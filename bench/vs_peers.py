"""txdsl against its peers, side by side: forward and greedy decoding, float32 and bfloat16.

Issue 15's "Measure". One process; the machine's limits first (a GEMM's rate per
dtype and a copy's bandwidth, :func:`_common.machine_limits`); then, per cell,
every implementation with the same weights (Hugging Face's initialisation copied
into each txdsl build), outputs compared *before* anything is timed, then
interleaved repetitions and medians:

- forward: GPT-2 small at 1x128 and 4x512 (logits), BERT-base (``BertModel``) at
  8x128 (last hidden state); txdsl eager, inductor, aot and the int8-weight build
  vs HF eager (SDPA), HF ``torch.compile`` and x-transformers (the same
  architecture, its own weights: x-transformers has no attention or LayerNorm
  biases and scales positions, so its outputs can't equal GPT-2's; shapes checked);
- decode: 128 greedy tokens after a 16-token prompt at batch 1 and 8 (tokens/s
  of the whole call); txdsl ``generate`` (eager; compiled and int8 where this
  build has them) vs HF ``generate`` (dynamic cache), HF ``generate`` with
  ``cache_implementation="static"`` and a compiled forward (its fastest
  documented path) and x-transformers' ``AutoregressiveWrapper.generate``;
- ``--large``: a ~1.1B LLaMA-style model (TinyLlama's shape) decoding at batch 1.

Time: every variant of a cell gets ``--variant-seconds`` (10) for its timed repetitions
(adaptive: as many as fit, at most ``--reps``, at least one; the count is reported). Its
first call is untimed when it compiles (a decoder decodes all its new tokens in it, so
it compiles for the cache capacity it is timed at); the warm call after it is checked and
is the first repetition (an eager decoder's first call is both). The run has
``--budget-minutes`` (15): a cell's variants get less than ``--variant-seconds`` when
the cells left would not fit otherwise (``_vs_peers_timing.Budget.variant_seconds``: the
time left, less what the later cells are expected to spend compiling and checking, split
evenly; the JSON gives each cell's ``variant_seconds``), and what would still start after
the budget is skipped and listed as skipped. A log line per cell gives the elapsed
seconds. Builds are shared across
cells (one eager, inductor, aot and int8 build per model and dtype; the aot package
has dynamic axes, so both GPT-2 forward cells use one; the forward cells time the int8
build eagerly, see :func:`int8_build`), and each compiled decode step keeps its own
dynamo cache. Compiles use the machine's Inductor cache and txdsl's build cache unless
``--cold-caches`` (fresh directories: the first run on a fresh machine); what each build
took is in the JSON (``build_seconds``). A peer that isn't installed (x-transformers:
``make bench``) is reported as "not installed".

Each result is also a fraction of its limit: forward = achieved FLOP/s (twice the
matmul weights per token, plus attention) / the dtype's GEMM rate; decode = bytes
of matmul weights read per step x steps/s / copy bandwidth. A feature another
branch adds (compiled ``Built.generate``, ``quantize=``) that this tree lacks is
reported as "not available in this build". Results: ``bench/results/vs_peers``
``.json``/``.md``/``.png`` (atomic writes; ``--quick`` into ``results/quick/``).

    python bench/vs_peers.py                   # the record (budget: < 15 min on 2 quiet cores)
    python bench/vs_peers.py --quick           # tiny models, every path, few repetitions
    python bench/vs_peers.py --check-only --quick   # build + compare only, nothing timed
    python bench/vs_peers.py --large --only decode  # add the ~1B LLaMA (needs ~10 GB)
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from _vs_peers_models import Family, _Embeddings, xt_model  # noqa: E402
from _vs_peers_report import markdown, plot  # noqa: E402
from _vs_peers_timing import Budget, reps_within, timed_rounds  # noqa: E402

NA = "not available in this build"
FWD_CELLS = [("gpt2", 1, 128), ("gpt2", 4, 512), ("bert", 8, 128)]
DEC_CELLS = [("gpt2", 1, 16, 128), ("gpt2", 8, 16, 128)]
QUICK_FWD = [("gpt2", 1, 32), ("gpt2", 2, 64), ("bert", 2, 32)]
QUICK_DEC = [("gpt2", 1, 8, 8), ("gpt2", 2, 8, 8)]
TOL = {"float32": 1e-3, "bfloat16": None}  # bf16: differences reported, not asserted


def quantize_supported() -> bool:
    import txdsl

    return "quantize" in inspect.signature(txdsl.build).parameters


def compiled_generate_supported() -> bool:
    from txdsl.back.builder import Built

    return callable(getattr(Built, "generate", None))


# ---------------------------------------------------------------- forward cells


def logits_of(out: Any, key: str = "logits") -> Any:
    """The compared output: ``key`` (``logits``; BERT: ``last_hidden_state``) of a
    model output, of an ``aot`` package's dict, or the tensor itself."""
    if isinstance(out, dict):
        return out.get(key, out.get("logits"))
    if getattr(out, key, None) is not None:
        return getattr(out, key)
    return out[0] if isinstance(out, (tuple, list)) else out


def forward_variants(fam: Family, ids: Any, args: argparse.Namespace) -> dict[str, Any]:
    """name -> a no-argument call returning the output, or a string saying why not."""
    import torch

    hf_kw = {"use_cache": False} if fam.name != "bert" else {}
    out: dict[str, Any] = {"HF eager (sdpa)": lambda: fam.hf(input_ids=ids, **hf_kw)}
    tx = fam.build("eager")
    out["txdsl eager"] = lambda: tx(input_ids=ids)
    if not args.no_compile:
        hf_c = torch.compile(fam.hf, dynamic=False)
        out["HF torch.compile"] = lambda: hf_c(input_ids=ids, **hf_kw)
        ind = fam.build("inductor", options=inductor_options(args))
        out["txdsl inductor"] = lambda: ind(input_ids=ids)
        if args.freezing:  # the fusion options side by side with the defaults
            frz = fam.build("inductor", options=(*inductor_options(args), "freezing=true",
                                                 "concat_linear=true"))
            out["txdsl inductor freezing"] = lambda: frz(input_ids=ids)
        out["txdsl aot"] = ("skipped (--skip)" if skipped(args, "txdsl aot") else  # compiles now
                            _try(lambda: fam.build("aot"), lambda b: lambda: b(input_ids=ids)))
    if quantize_supported():  # eager unless --int8-compiled-forward (see int8_build)
        name = "txdsl int8-weight" + ("" if args.int8_compiled_forward else " (eager)")
        compiled = args.int8_compiled_forward
        out[name] = _try(lambda: int8_build(fam, args),  # eager: the build's own module
                         lambda b: (lambda: b(input_ids=ids)) if compiled else
                         (lambda: b.module(input_ids=ids)))
    else:
        out["txdsl int8-weight"] = NA
    out["x-transformers"] = _xt(lambda: xt_model(fam), lambda m: lambda: m(ids))
    return out


def int8_build(fam: Family, args: argparse.Namespace) -> Any:
    """The int8-weight build, one per family and dtype: compiled at its first call, like the
    inductor build. Decoding uses it compiled; the forward cells call its eager module
    (``Built.module``) unless ``--int8-compiled-forward``: a forward has more than
    ``Int8Linear.PACK_ROWS`` rows, so the int8 matrix is converted and the float GEMM runs,
    compiled or not (compiled: 0.89-0.97x HF eager), and its three compiles per dtype
    (20-25 s each in bfloat16) kept the grid over its 15 minutes."""
    if args.no_compile:
        return fam.build("eager", quantize="int8-weight")
    return fam.build("inductor", quantize="int8-weight", options=inductor_options(args))


XT_MISSING = "not installed: pip install x-transformers==2.31.10 (make bench)"


def xt_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("x_transformers") is not None


def _xt(make: Callable[[], Any], call: Callable[[Any], Any]) -> Any:
    return _try(make, call) if xt_installed() else XT_MISSING


def skipped(args: argparse.Namespace, name: str) -> bool:
    return any(text.lower() in name.lower() for text in args.skip)


def inductor_options(args: argparse.Namespace) -> tuple[str, ...]:
    """txdsl's inductor builds: static shapes, compiled at the first call, plus ``--tx-option``."""
    return ("dynamic=false", "warmup=false", *args.tx_option)


def _try(make: Callable[[], Any], call: Callable[[Any], Any]) -> Any:
    try:
        return call(make())
    except Exception as exc:  # noqa: BLE001 - a failing build is a result, not a crash
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


def forward_flops(fam: Family, batch: int, seq: int) -> float:
    """Dense FLOPs of one forward: 2 x matmul weights per token, plus QK^T and AV
    (4 x T x d per token and layer; half of it under a causal mask)."""
    causal = 0.5 if fam.name != "bert" else 1.0
    tokens = batch * seq
    return 2 * fam.matmul_elements * tokens + 4 * causal * fam.layers * tokens * seq * fam.width


def compare(name: str, out: Any, ref: Any, tol: float | None, key: str) -> dict[str, Any]:
    a, b = logits_of(out, key).float(), logits_of(ref, key).float()
    if a.shape != b.shape:
        raise AssertionError(f"{name}: output shape {tuple(a.shape)} != {tuple(b.shape)}")
    diff = (a - b).abs().max().item()
    res: dict[str, Any] = {"max_abs_diff": diff}
    if a.dim() == 3 and a.shape[-1] > 1000:  # logits: how often the top-1 token agrees
        res["top1_agree"] = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    if tol is not None and name.startswith("txdsl") and "int8" not in name and not diff <= tol:
        raise AssertionError(f"{name}: differs from HF eager by {diff:.3g} > {tol}")
    return res


# ---------------------------------------------------------------- decode cells


def decode_variants(fam: Family, ids: Any, new: int, args: argparse.Namespace) -> dict[str, Any]:
    """name -> a call ``f(n)`` returning ``(B, prompt + n)`` token ids (``n`` new tokens, at
    most ``new``), or a string saying why not."""
    import torch
    from transformers import CompileConfig

    mask = torch.ones_like(ids)

    def hf_kw(n: int) -> dict:
        return dict(attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                    num_beams=1, pad_token_id=0, eos_token_id=None)
    out: dict[str, Any] = {"HF generate": lambda n: fam.hf.generate(input_ids=ids, **hf_kw(n))}
    tx = fam.build("eager").module
    out["txdsl generate (eager)"] = lambda n: tx.generate(ids, n, attention_mask=mask)
    if not args.no_compile:
        config = CompileConfig(fullgraph=False, dynamic=False)
        config._compile_all_devices = True  # HF compiles only on accelerators unless told
        out["HF static cache + compile"] = lambda n: fam.hf.generate(
            input_ids=ids, cache_implementation="static", compile_config=config, **hf_kw(n))
        if compiled_generate_supported():
            built = fam.build("inductor", options=inductor_options(args))
            out["txdsl generate (inductor)"] = lambda n: built.generate(
                ids, n, attention_mask=mask)
        else:
            out["txdsl generate (inductor)"] = NA
    if quantize_supported():
        def q_generate(b: Any) -> Any:
            gen = b.generate if compiled_generate_supported() else b.module.generate
            return lambda n: gen(ids, n, attention_mask=mask)
        out["txdsl int8-weight generate"] = _try(lambda: int8_build(fam, args), q_generate)
    else:
        out["txdsl int8-weight generate"] = NA

    def xt_generate(m: Any) -> Any:
        from x_transformers import AutoregressiveWrapper

        wrap = AutoregressiveWrapper(m.model if isinstance(m, _Embeddings) else m).eval()
        return lambda n: torch.cat([ids, wrap.generate(ids, n, temperature=0.0,
                                                       cache_kv=True)], dim=1)
    out["x-transformers generate"] = (_xt(lambda: xt_model(fam), xt_generate)
                                      if fam.name != "bert" else "not a decoder")
    return out


def compiles(name: str) -> bool:
    """Whether a decode variant compiles at its first call (HF's static cache + compile,
    txdsl's compiled step and int8 build); the others' first call is already a warm one
    (128 steps of the same eager code)."""
    return any(word in name for word in ("compile", "inductor", "int8"))


def agreement(tokens: Any, ref: Any, prompt: int) -> float:
    """The fraction of rows x new positions equal to ``ref`` up to each row's first
    difference (greedy decoding diverges for good after one)."""
    if tokens.shape != ref.shape:
        return 0.0
    same = (tokens[:, prompt:] == ref[:, prompt:]).long().cumprod(dim=1)
    return same.float().mean().item() if same.numel() else 1.0


def weight_bytes(fam: Family, variant: str) -> int:
    """Bytes of matmul weights a decode step reads (int8 builds: one byte each)."""
    size = 1 if "int8" in variant else fam.hf.dtype.itemsize
    return fam.matmul_elements * size


# ---------------------------------------------------------------- the run


def run_cell(kind: str, fam: Family, cell: tuple, args: argparse.Namespace,
             limits: dict | None, clock: Budget) -> dict[str, Any]:
    """Build, check and time one cell; every variant within ``args.variant_seconds``
    (adaptive repetitions; a decode too slow for that runs fewer new tokens, said so)."""
    t_cell = time.perf_counter()
    built = sum(fam.build_seconds.values())  # builds made in this cell: not its overhead
    if kind == "forward":
        _, b, t = cell
        ids = C.token_ids(b, t, fam.vocab, seed=args.seed + 1)
        calls = forward_variants(fam, ids, args)
        label = f"{b}x{t}"
        new = p = 0
    else:
        _, b, p, new = cell
        ids = C.token_ids(b, p, fam.vocab, seed=args.seed + 2)
        calls = decode_variants(fam, ids, new, args)
        label = f"b{b} {p}+{new}"
    entry: dict[str, Any] = {"kind": kind, "family": fam.name, "dtype": fam.dtype,
                             "cell": label, "variants": {}}
    ref = None
    if args.skip:  # "--skip aot": every variant whose name contains it
        calls = {n: ("skipped (--skip)" if skipped(args, n) and not
                     n.startswith("HF eager") and n != "HF generate" else c)
                 for n, c in calls.items()}
    runs: dict[str, Callable[[], Any]] = {}
    warm: dict[str, float] = {}  # name -> seconds of a warm call already made
    for name, call in calls.items():
        if isinstance(call, str):
            entry["variants"][name] = {"unavailable": call}
            continue
        if ref is not None and clock.out():
            entry["variants"][name] = {"unavailable": "skipped: over --budget-minutes"}
            continue
        v: dict[str, Any] = {}
        start = time.perf_counter()
        try:
            if kind == "forward":
                res = call()
                v["first_call_s"] = v["call_s"] = time.perf_counter() - start
                if v["first_call_s"] > 1.0 and not args.check_only:  # compiled or cold: again
                    v["call_s"] = warm[name] = C.timed(call)  # warm: the first repetition
                runs[name] = call
            else:
                # The first call decodes every new token, so a compiling decoder compiles
                # for the cache capacity it is timed at (a short probe compiled twice).
                res = call(new)
                v["first_call_s"] = v["call_s"] = time.perf_counter() - start
                if not compiles(name):  # nothing to warm up: the checked call is repetition 1
                    warm[name] = v["call_s"]
                elif not args.check_only:
                    t_check = time.perf_counter()
                    res = call(new)  # warm: checked, and the first repetition
                    v["call_s"] = warm[name] = time.perf_counter() - t_check
                v["new_tokens"] = used = new
                runs[name] = (lambda c, n: lambda: c(n))(call, used)
        except Exception as exc:  # noqa: BLE001
            entry["variants"][name] = {"unavailable": f"failed: {type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0][:160]}"}
            runs.pop(name, None)
            warm.pop(name, None)
            continue
        entry["variants"][name] = v
        if ref is None:
            ref = res
        elif name.startswith("x-transformers"):
            v["note"] = "own weights: output shape checked only"
            got, want = logits_of(res, fam.key).shape, logits_of(ref, fam.key).shape
            if kind == "decode":
                want = (want[0], p + v["new_tokens"])
            if tuple(got) != tuple(want):
                raise AssertionError(f"{name}: output shape {tuple(got)} != {tuple(want)}")
        elif kind == "forward":
            v.update(compare(name, res, ref, TOL[fam.dtype], fam.key))
        else:
            v["token_agreement"] = agreement(res, ref[:, :res.shape[1]], p)
            if (fam.dtype == "float32" and name == "txdsl generate (eager)"
                    and v["token_agreement"] < 1.0):
                raise AssertionError(f"{name}: tokens differ from HF generate "
                                     f"({v['token_agreement']:.3f} agree)")
    live = list(runs)
    print(f"  {fam.name} {fam.dtype} {kind} {label}: outputs checked ("
          + ", ".join(f"{n} {_agree_text(entry['variants'][n])}" for n in live) + ")",
          flush=True)
    if args.check_only:
        return entry
    max_reps = args.reps or (2 if args.quick else 7 if kind == "forward" else 3)
    seconds = clock.variant_seconds(args.variant_seconds, len(live))  # <= --variant-seconds
    entry["variant_seconds"] = round(seconds, 2)
    reps = {n: reps_within(entry["variants"][n], max_reps, seconds) for n in live}
    t_timed = time.perf_counter()
    entry["overhead_seconds"] = round(t_timed - t_cell - (sum(fam.build_seconds.values())
                                                          - built), 2)
    times = timed_rounds(runs, reps, clock, warm)
    live = [n for n in live if times[n]]
    per = {n: C.summarize(times[n])["median_s"] / (entry["variants"][n].get("new_tokens") or 1)
           for n in live}
    hf = per[live[0]]
    for n in live:
        s = C.summarize(times[n])
        v = entry["variants"][n]
        v.update(s, ratio_vs_hf=hf / per[n], reps=len(times[n]))
        if kind == "forward":
            v["tokens_per_s"] = b * t / s["median_s"]
            v["gflops"] = forward_flops(fam, b, t) / s["median_s"] / 1e9
            if limits and not n.startswith("x-"):
                v["fraction_of_gemm"] = v["gflops"] / limits["gemm_gflops"][fam.dtype]
        else:
            v["tokens_per_s"] = b / per[n]
            if limits and not n.startswith("x-"):
                v["fraction_of_bandwidth"] = (weight_bytes(fam, n) / per[n] / 1e9
                                              / limits["copy_gbps"])
    entry["seconds"] = time.perf_counter() - t_cell
    peers = [n for n in live if not n.startswith("txdsl")]
    if not peers:
        return entry
    entry["fastest_peer"] = max(peers, key=lambda n: entry["variants"][n]["ratio_vs_hf"])
    best_tx = [n for n in live if n.startswith("txdsl")]
    if best_tx:
        entry["best_txdsl"] = max(best_tx, key=lambda n: entry["variants"][n]["ratio_vs_hf"])
        entry["best_txdsl_vs_fastest_peer"] = (
            entry["variants"][entry["best_txdsl"]]["ratio_vs_hf"]
            / entry["variants"][entry["fastest_peer"]]["ratio_vs_hf"])
    print("    " + "  ".join(f"{n} {entry['variants'][n]['ratio_vs_hf']:.2f}x"
                             f"/{entry['variants'][n]['reps']}" for n in live), flush=True)
    return entry


def _agree_text(v: dict) -> str:
    if "max_abs_diff" in v:
        return f"{v['max_abs_diff']:.1e}"
    if "token_agreement" in v:
        return f"{100 * v['token_agreement']:.0f}% tokens"
    return "ref" if "note" not in v else "shape"


def cold_caches(args: argparse.Namespace) -> str:
    """With ``--cold-caches``: fresh, empty directories for Inductor's on-disk caches and
    txdsl's build cache (set before torch is imported), so every compile in the run is a
    cold one, as on a fresh machine. Otherwise the machine's own caches, as any torch
    program uses them (warm from an earlier run of the same code and versions)."""
    import os
    import tempfile

    if not args.cold_caches:
        return "machine: the machine's own Inductor and txdsl build caches"
    root = Path(tempfile.mkdtemp(prefix="vs_peers_caches_"))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    os.environ["TXDSL_CACHE_DIR"] = str(root / "txdsl")
    return "cold: fresh Inductor and txdsl build-cache directories"


def run(args: argparse.Namespace) -> int:
    caches = cold_caches(args)
    import torch

    t_start = time.perf_counter()
    # Dynamo keeps graphs per code object, 8 at most: every HF torch.compile and static-cache
    # compile of one class (GPT2LMHeadModel.forward: 2 shapes x 2 dtypes + 2 batch sizes x 2
    # dtypes) shares one, and past the limit runs eagerly. txdsl's builds each have their
    # own (txdsl.runtime.decode.own_forward); this gives the peers the same room.
    torch._dynamo.config.recompile_limit = 64
    threads = C.set_threads(args.threads)
    dtypes = args.dtypes.split(",")
    kinds = args.only.split(",") if args.only else ["forward", "decode"]
    fwd = QUICK_FWD if args.quick else FWD_CELLS
    dec = list(QUICK_DEC if args.quick else DEC_CELLS)
    if args.large:
        dec.append(("llama", 1, 16, 8 if args.quick else 64))
    print(f"vs_peers: {threads} thread(s), dtypes {dtypes}, {', '.join(kinds)}; quantize "
          f"{'yes' if quantize_supported() else NA}; compiled generate "
          f"{'yes' if compiled_generate_supported() else NA}", flush=True)
    limits = None if args.check_only else C.machine_limits(args.quick, dtypes)
    if limits:
        print(f"  machine: GEMM {limits['gemm_gflops']} GFLOP/s (n={limits['gemm_n']}), copy "
              f"{limits['copy_gbps']} GB/s", flush=True)
    cells: list[dict] = []
    skipped_cells: list[str] = []
    build_seconds: dict[str, dict[str, float]] = {}  # "gpt2 float32" -> build -> seconds
    n_cells = len(dtypes) * ((len(fwd) if "forward" in kinds else 0)
                             + (len(dec) if "decode" in kinds else 0))
    clock = Budget(None if args.check_only else args.budget_minutes, cells=n_cells)
    if not xt_installed():
        print(f"  x-transformers {XT_MISSING}", flush=True)
    with torch.inference_mode():
        for dtype in dtypes:
            families: dict[str, Family] = {}

            def family(name: str) -> Family:
                if name not in families:
                    families[name] = Family(name, dtype, args.quick, args.seed)
                return families[name]

            for kind, grid in (("forward", fwd), ("decode", dec)):
                if kind in kinds:
                    for cell in grid:
                        name = f"{cell[0]} {dtype} {kind} {cell[1:]}"
                        if clock.out():
                            clock.skipped()
                            skipped_cells.append(name)
                            print(f"  {name}: skipped (over --budget-minutes "
                                  f"{args.budget_minutes})", flush=True)
                            continue
                        entry = run_cell(kind, family(cell[0]), cell, args, limits, clock)
                        clock.finished(entry.get("overhead_seconds", 0.0))
                        cells.append(entry)
                        print(f"  [{clock.elapsed():.0f} s] {name} done in "
                              f"{entry.get('seconds', 0):.0f} s", flush=True)
            for fam in families.values():
                build_seconds[f"{fam.name} {dtype}"] = fam.build_seconds
            families.clear()
    duration = time.perf_counter() - t_start
    if args.check_only:
        print(f"check-only: every txdsl build matches Hugging Face ({duration:.0f} s); "
              "nothing timed or written")
        return 0
    data = {"benchmark": "vs_peers", "quick": args.quick, "duration_s": duration,
            "txdsl_inductor_options": list(inductor_options(args)),
            "machine": limits, "env": C.environment(threads), "cells": cells,
            "skipped_cells": skipped_cells, "budget_minutes": args.budget_minutes,
            "build_seconds": build_seconds, "caches": caches,
            "variant_seconds": args.variant_seconds,
            "quantize_available": quantize_supported(),
            "compiled_generate_available": compiled_generate_supported(),
            "what": "ratio_vs_hf = HF eager (forward) or HF generate (decode) median time / "
                    "this one's; fractions: forward GFLOP/s over the GEMM rate, decode "
                    "weight bytes per step x steps/s over the copy bandwidth"}
    name = args.out or ("quick/vs_peers" if args.quick else "vs_peers")
    if args.quick:
        C._atomic_write(C.RESULTS / "quick" / ".gitignore", "*\n")  # a smoke run is no record
    md = markdown(data)
    js, mdp = C.write_results(name, data, md)
    png = plot(data, js.with_suffix(".png"))
    print("\n" + md + f"\n\nwrote {js}, {mdp}" + (f", {png}" if png else " (no matplotlib)")
          + f" in {duration:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_common_args(p)
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated")
    p.add_argument("--only", default=None, help="forward, decode or both (comma-separated)")
    p.add_argument("--large", action="store_true",
                   help="add a ~1.1B LLaMA-style decode at batch 1 (minutes, ~10 GB)")
    p.add_argument("--no-compile", action="store_true",
                   help="skip every compiled variant (torch.compile, inductor, aot)")
    p.add_argument("--reps", type=int, default=None,
                   help="at most this many timed rounds (default 7 forward, 3 decode; "
                        "--quick 2); fewer when they exceed --variant-seconds")
    p.add_argument("--variant-seconds", type=float, default=10.0,
                   help="time budget of one variant's timed repetitions in a cell "
                        "(default 10; less when the run's budget needs it; at least one "
                        "repetition)")
    p.add_argument("--budget-minutes", type=float, default=15.0,
                   help="the whole run's budget (default 15): later cells' timing is "
                        "shortened to fit it; cells and variants that would start after "
                        "it are skipped and reported as skipped; 0: none")
    p.add_argument("--skip", action="append", default=[], metavar="TEXT",
                   help="leave out the variants whose name contains TEXT (repeatable; the HF "
                        "eager / generate baselines stay), e.g. --skip aot --skip x-trans")
    p.add_argument("--freezing", action="store_true",
                   help="add a forward variant: txdsl inductor with freezing=true and "
                        "concat_linear=true (weights folded and prepacked, q/k/v as one GEMM)")
    p.add_argument("--cold-caches", action="store_true",
                   help="fresh, empty Inductor and txdsl build caches: every compile cold, "
                        "as on a fresh machine (default: the machine's own caches)")
    p.add_argument("--int8-compiled-forward", action="store_true",
                   help="time the forward cells' int8-weight build compiled (inductor, one "
                        "compile per shape) instead of eager; decoding always uses it compiled")
    p.add_argument("--tx-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an inductor option for txdsl's inductor builds (repeatable), e.g. "
                        "freezing=true, concat_linear=true, mode=max-autotune-no-cudagraphs")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
