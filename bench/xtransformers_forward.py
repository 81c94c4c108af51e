"""Forward throughput: txdsl vs x-transformers (lucidrains) on an equivalent GPT-style decoder.

x-transformers' ``TransformerWrapper(num_tokens, max_seq_len, attn_layers=Decoder(dim,
depth, heads))`` is configured as close to ``specs/gpt2.tx`` as its options allow:
pre-LayerNorm, learned absolute positions, a 4x FFN with tanh-approximated GELU
(``ff_custom_activation``), a tied LM head (``tie_embedding=True``), a final norm,
dropout off. It has no option for biases in the attention projections or in
its LayerNorms, so the comparison is made against two txdsl builds:

- ``txdsl_gpt2``     ``specs/gpt2.tx`` resized (attention and LayerNorm biases, as GPT-2);
- ``txdsl_matched``  the same with ``attention.bias = false`` and ``layernorm(bias: false)``:
  exactly x-transformers' parameter count.

and for each attention implementation: x-transformers ``attn_flash=True``
(``F.scaled_dot_product_attention``) vs txdsl's selected ``sdpa`` kernel, and
x-transformers' default einsum attention vs txdsl's ``reference`` kernel.
No weights are copied (the architectures differ in small ways); parameter
counts are reported. All eager, no attention mask (each library's usual call for
an unpadded batch). Ratio > 1: faster than x-transformers with flash attention.

If ``x_transformers`` is not importable, a result saying so is written.

    python bench/xtransformers_forward.py
    python bench/xtransformers_forward.py --check-only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

DEFAULT_GRID = "1x64,1x256,4x256"
QUICK_GRID = "1x64"
CHECK_GRID = "2x32"
LABELS = {
    "xt_flash": "x-transformers (attn_flash)",
    "xt_einsum": "x-transformers (default attn)",
    "txdsl_matched": "txdsl matched (sdpa)",
    "txdsl_matched_reference": "txdsl matched (reference attn)",
    "txdsl_gpt2": "txdsl gpt2.tx (sdpa)",
}
DIFFERENCES = [
    "x-transformers multiplies the learned position embedding by d_model**-0.5 "
    "(one extra elementwise multiply); txdsl adds it unscaled (GPT-2)",
    "x-transformers' LayerNorm is F.layer_norm without affine followed by a separate "
    "multiply by gamma; txdsl uses nn.LayerNorm (affine fused)",
    "x-transformers reshapes heads with einops Rearrange modules and has many optional "
    "code paths checked per call; txdsl uses view/transpose",
    "attention kernels: with attn_flash and no mask, x-transformers calls "
    "F.scaled_dot_product_attention(is_causal=True), as txdsl's sdpa kernel does; its default "
    "attention is einsum + masked softmax, like txdsl's reference kernel",
    "txdsl_gpt2 additionally has q/k/v/out and LayerNorm biases (GPT-2); txdsl_matched does not",
    "weights are independently initialised (timing does not depend on their values)",
]


def parse_grid(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.strip().lower().split("x")) for item in text.split(",")]  # type: ignore[misc]


def matched_spec(shape: C.GPT2Shape) -> str:
    return shape.spec().rstrip().rstrip("}") + (
        "  decoder {\n"
        "    attention.bias = false\n"
        "    norm = layernorm(eps: 1e-5, bias: false)\n"
        "    final_norm = layernorm(eps: 1e-5, bias: false)\n"
        "  }\n"
        "}\n")


def xt_model(shape: C.GPT2Shape, flash: bool, seed: int):
    import torch
    from torch import nn
    from x_transformers import Decoder, TransformerWrapper

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TransformerWrapper(
            num_tokens=shape.vocab, max_seq_len=shape.context, tie_embedding=True,
            emb_dropout=0.0,
            attn_layers=Decoder(dim=shape.d_model, depth=shape.layers, heads=shape.heads,
                                attn_flash=flash, attn_dropout=0.0, ff_dropout=0.0,
                                ff_mult=4, ff_custom_activation=nn.GELU(approximate="tanh")))
    return model.eval()


def skipped(args: argparse.Namespace, reason: str) -> int:
    msg = f"SKIPPED: x_transformers is not importable ({reason}); install it with " \
          "`.venv/bin/pip install --no-deps x-transformers einops einx loguru " \
          "torch-einops-utils frozendict` (--no-deps keeps the installed torch)"
    print(msg)
    if not args.check_only:
        md = f"## Forward: txdsl vs x-transformers\n\n{msg}\n"
        C.write_results(args.out or "xtransformers_forward",
                        {"benchmark": "xtransformers_forward", "skipped": True,
                         "reason": reason, "env": C.environment()}, md)
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    try:
        import x_transformers  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
        return skipped(args, f"{type(exc).__name__}: {exc}")

    threads = C.set_threads(args.threads)
    shape = C.shape_from_args(args)
    grid = parse_grid(args.grid or (CHECK_GRID if args.check_only
                                    else QUICK_GRID if args.quick else DEFAULT_GRID))
    reps = args.reps or (3 if args.quick else 9)
    print(f"xtransformers_forward: {shape}, {threads} thread(s), grid {grid}", flush=True)

    import txdsl

    models: dict[str, Any] = {
        "xt_flash": xt_model(shape, True, args.seed),
        "xt_einsum": xt_model(shape, False, args.seed),
    }
    spec = matched_spec(shape)
    for name, text, force in (("txdsl_matched", spec, None),
                              ("txdsl_matched_reference", spec, {"attention": "reference"}),
                              ("txdsl_gpt2", shape.spec(), None)):
        built = txdsl.build(text, base_dir=str(C.SPECS), backend="eager", seed=args.seed,
                            force_kernels=force, progress=False)
        models[name] = built.module
    params = {n: C.param_count(m) for n, m in models.items()}
    if params["txdsl_matched"] != params["xt_flash"]:
        print(f"note: parameter counts differ: {params}")
    names = list(models)

    def call(name: str, ids) -> Callable[[], Any]:
        m = models[name]
        if name.startswith("xt"):
            return lambda: m(ids)
        return lambda: m(input_ids=ids).logits

    rows = []
    with torch.inference_mode():
        for b, t in grid:
            ids = C.token_ids(b, t, shape.vocab, seed=args.seed + 1)
            calls = {n: call(n, ids) for n in names}
            for n, f in calls.items():
                out = f()
                if tuple(out.shape) != (b, t, shape.vocab) or not torch.isfinite(out).all():
                    raise AssertionError(f"{n}: bad output {tuple(out.shape)} at {b}x{t}")
            print(f"  {b}x{t}: every model gives finite ({b}, {t}, {shape.vocab}) logits",
                  flush=True)
            if args.check_only:
                continue
            times = C.interleaved(calls, reps=reps, warmup=args.warmup,
                                  min_seconds=0.0 if args.quick else 3.0)
            base = C.summarize(times["xt_flash"])["median_s"]
            entry: dict[str, Any] = {"batch": b, "seq": t, "variants": {}}
            for n in names:
                s = C.summarize(times[n])
                entry["variants"][n] = {**s, "tokens_per_s": b * t / s["median_s"],
                                        "ratio_vs_xt_flash": base / s["median_s"]}
            rows.append(entry)
            print("  " + "  ".join(f"{n} {entry['variants'][n]['ratio_vs_xt_flash']:.2f}x"
                                   for n in names), flush=True)

    if args.check_only:
        print("check-only: both libraries build and run; nothing timed or written")
        return 0
    env = C.environment(threads)
    data = {
        "benchmark": "xtransformers_forward",
        "what": "forward tokens/s, ratios vs x-transformers with attn_flash (>1 = faster)",
        "skipped": False, "shape": shape.__dict__, "grid": grid, "reps": reps,
        "params": params, "differences": DIFFERENCES, "txdsl_matched_spec": spec,
        "env": env, "results": rows,
    }
    md = markdown(data, names)
    js, mdp = C.write_results(args.out or "xtransformers_forward", data, md)
    print()
    print(md)
    print(f"\nwrote {js.relative_to(C.ROOT)} and {mdp.relative_to(C.ROOT)}")
    return 0


def markdown(data: dict, names: list[str]) -> str:
    s = data["shape"]
    lines = [
        "## Forward: txdsl vs x-transformers (equivalent decoder, eager)",
        "",
        f"Decoder: {s['layers']} layers, d_model {s['d_model']}, {s['heads']} heads, "
        f"vocab {s['vocab']}, context {s['context']}. x-transformers "
        f"{data['env'].get('x_transformers') or '?'}; {C.env_line(data['env'])}. "
        f"Median of {data['reps']}+ interleaved runs, no attention mask.",
        "",
        "Ratio = x-transformers (attn_flash) median time / this one's (> 1: faster); "
        "tokens/s in brackets.",
        "",
    ]
    head = ["batch x seq"] + [LABELS[n] for n in names]
    rows = [[f"{r['batch']}x{r['seq']}"] + [
        f"{r['variants'][n]['ratio_vs_xt_flash']:.2f}x "
        f"({C.fmt_rate(r['variants'][n]['tokens_per_s'])})" for n in names]
        for r in data["results"]]
    lines.append(C.md_table(head, rows))
    lines += ["", "Parameters: " + ", ".join(f"{LABELS[n]} {p:,}"
                                             for n, p in data["params"].items()) + ".",
              "", "Remaining differences:", ""]
    lines += [f"- {d}" for d in data["differences"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_shape_args(p)
    C.add_common_args(p)
    p.add_argument("--grid", default=None, help=f"batch x seq shapes (default {DEFAULT_GRID})")
    p.add_argument("--reps", type=int, default=None, help="timed rounds (default 9; --quick 3)")
    p.add_argument("--warmup", type=int, default=2)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
