"""Decode cost vs position: linear attention's recurrent state (flat) vs full attention's
KV cache (growing).

For each kind (``full`` with its preallocated KV cache, ``linear``, ``performer``
with their constant-size recurrent state, causal ``luna`` with its running sums,
``compressed`` with its slots, a third of a KV cache) and each position P (default 1k, 4k,
16k): prefill P tokens, then time single-token decode steps (``model(x,
past_key_values=cache)``), interleaved across kinds and positions (every cache
prefilled first), median; tokens/s = 1 / median step time (batch 1). Also records
each cache's bytes at P.
Expected: flat tokens/s and bytes for ``linear``/``performer``/``luna``, falling tokens/s
and growing bytes for ``full`` (its step reads all P cached keys).

One process, eager, small model (rope positions so every kind takes the same
spec). Numbers are relative: kinds measured side by side. The prompt is
prefilled ``--prefill-chunk`` tokens per call (default 1024), so full
attention's prefill holds a ``chunk x P`` score block (~270 MB at 16k with 4
heads), never ``P x P`` (4.3 GB); the recurrent kinds carry their state across
chunks exactly as across decode steps. Peak memory at the default size is
well under 1 GB; the run takes a few minutes (most of it full attention's
16k prefill).

    python bench/decode_scaling.py                   # positions 1024,4096,16384
    python bench/decode_scaling.py --quick           # a smoke test: tiny sizes, no real timing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

KINDS = {"full": "full(heads: heads)", "linear": "linear(heads: heads)",
         "performer": "performer(heads: heads, features: 64)",
         "luna": "luna(heads: heads, p: 16)", "compressed": "compressed(heads: heads, stride: 3)"}
# Luna's pack reads the raw input, so it takes no rotation: it gets learned positions in
# the embedding instead (the same per-token cost, a table lookup).
LEARNED_POSITIONS = {"luna"}
SPEC = """
model decode_{kind} {{
  vocab = {vocab}; d_model = {d_model}; heads = {heads}; layers = {layers}; context = {context}
  embedding {{ tokens = vocab }}
  decoder(layers) {{
    residual = pre; norm = layernorm; position = rope
    attention = {attention}
    ffn = mlp(hidden: 4 * d_model, act: gelu)
    final_norm = layernorm
  }}
  heads {{ lm = lm(tied: true) }}
}}
"""


def build(kind: str, args, context: int):
    import txdsl

    text = SPEC.format(kind=kind, attention=KINDS[kind], vocab=args.vocab, d_model=args.d_model,
                       heads=args.heads, layers=args.layers, context=context)
    if kind in LEARNED_POSITIONS:
        text = text.replace("; position = rope", "").replace(
            "tokens = vocab }", "tokens = vocab; position = learned(max_len: context) }")
    return txdsl.build(text, backend="eager", seed=args.seed).module.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_common_args(p)
    p.add_argument("--positions", default="1024,4096,16384")
    p.add_argument("--steps", type=int, default=16, help="decode steps per timed repetition")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--prefill-chunk", type=int, default=1024,
                   help="prompt tokens per prefill call (bounds full attention's scores)")
    args = p.parse_args(argv)
    if args.quick:
        args.positions, args.steps, args.reps = "16,64", 2, 1
        args.d_model, args.layers, args.prefill_chunk = 32, 1, 24
    import torch

    threads = C.set_threads(args.threads)
    positions = [int(x) for x in args.positions.split(",")]
    kinds = args.kinds.split(",")
    context = max(positions) + args.steps * (args.reps + 2) + 1
    models = {k: build(k, args, context) for k in kinds}
    rows, data = [], {"positions": positions, "kinds": kinds, "steps": args.steps,
                      "reps": args.reps, "shape": {"layers": args.layers,
                                                   "d_model": args.d_model,
                                                   "heads": args.heads}, "results": {}}
    g = torch.Generator().manual_seed(args.seed)
    token = torch.randint(0, args.vocab, (1, 1), generator=g)
    caches, steps = {}, {}
    with torch.no_grad():
        for P in positions:  # every (kind, position) prefilled first ...
            prompt = torch.randint(0, args.vocab, (1, P), generator=g)
            for k, m in models.items():
                cache = m.new_cache(1, P + args.steps * (args.reps + 2) + 1)  # what P needs
                for start in range(0, P, args.prefill_chunk):  # chunked prefill
                    m(prompt[:, start:start + args.prefill_chunk], past_key_values=cache,
                      use_cache=True)
                caches[k, P] = cache

                def step(m=m, cache=cache):
                    for _ in range(args.steps):
                        m(token, past_key_values=cache, use_cache=True)
                steps[f"{k}@{P}"] = step
        # ... then all of them timed interleaved: drift in the machine's state (allocator,
        # frequency) hits every position alike, so flat-vs-growing compares like with like
        times = C.interleaved(steps, reps=args.reps, warmup=1)
    for P in positions:
        for k in kinds:
            stats = C.summarize(times[f"{k}@{P}"])
            rate = args.steps / stats["median_s"]
            nbytes = caches[k, P].stack.nbytes()
            data["results"].setdefault(k, {})[P] = {**stats, "tokens_per_s": rate,
                                                    "cache_bytes": nbytes}
            rows.append((k, P, C.fmt_rate(rate), f"{stats['iqr_rel']:.0%}",
                         f"{nbytes / 1024:,.1f} KiB"))
    env = C.environment(threads)
    data["environment"] = env
    md = ("# Decode cost vs position (batch 1, eager)\n\n"
          + C.md_table(["kind", "position", "tokens/s (median)", "IQR", "cache"], rows)
          + f"\n\n{env_line(env, args)}\n")
    if args.check_only:
        print(md)
        return 0
    name = args.out or ("decode_scaling_quick" if args.quick else "decode_scaling")
    js, mdp = C.write_results(name, data, md)
    print(md)
    print(f"wrote {js} and {mdp}")
    return 0


def env_line(env, args) -> str:
    return (f"{args.layers} layers, d_model {args.d_model}, {args.heads} heads; {args.steps} steps "
            f"per repetition, {args.reps} repetitions; " + C.env_line(env))


if __name__ == "__main__":
    raise SystemExit(main())
