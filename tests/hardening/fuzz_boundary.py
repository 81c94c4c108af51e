"""Fuzz a built model's boundary in this process; run by test_model_inputs.py as a child.

    python fuzz_boundary.py SPEC BACKENDS CASES SEED [ARTIFACT_DIR]

SPEC is a key of ``SPECS`` (decoder, encoder, encoder_decoder), BACKENDS
``eager``, ``aot`` (built once into ARTIFACT_DIR, loaded with ``txdsl.load``)
or both, comma-separated; CASES cases per backend. Each case draws random dtypes, ranks, shapes and values for a
random subset of the model's keyword inputs, prints ``start N`` (flushed: if a
signal kills the process, the parent knows which case), calls the model and
prints one JSON line: ``ok`` (the output has the right shape, is finite and, for
the package, equals the eager model's), ``refused`` (a ValueError/TypeError)
or ``wrong`` (any other exception, or an incorrect output).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import torch

import txdsl

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"
VOCAB, CONTEXT = 40, 12
SPECS = {
    "decoder": 'import "gpt2.tx"\nmodel fz extends gpt2 { layers = 1; d_model = 16; heads = 2; '
               f'vocab = {VOCAB}; context = {CONTEXT}; drop = 0.0 }}\n',
    "encoder": 'import "bert.tx"\nmodel fz extends bert_mlm { layers = 1; d_model = 16; heads = 2; '
               f'vocab = {VOCAB}; context = {CONTEXT}; drop = 0.0 }}\n',
    "encoder_decoder": 'import "t5.tx"\nmodel fz extends t5_small { layers = 1; d_model = 16; '
                       f'heads = 2; d_ff = 32; vocab = {VOCAB}; context = {CONTEXT}; drop = 0.0 }}\n',
}
INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "document_ids",
          "decoder_input_ids", "decoder_attention_mask", "decoder_position_ids",
          "cache_position", "pixel_values", "past_key_values")
DTYPES = (torch.int64, torch.int64, torch.int32, torch.float32, torch.bool, torch.int16,
          torch.float64)


def draw_tensor(rng: random.Random, B: int, T: int, valid_high: int) -> object:
    """A tensor that is often right, else with its shape, dtype or values perturbed."""
    if rng.random() < 0.75:
        return torch.randint(0, valid_high, (B, T))
    if rng.random() < 0.1:
        return rng.choice([[[1, 2]], 3, "ids"])
    shape = [B, T]
    r = rng.random()
    if r < 0.3:
        shape = [rng.choice([0, 1, 2, 3, CONTEXT, CONTEXT + 1]) for _ in range(rng.choice([0, 1, 2, 3, 4]))]
    elif r < 0.6:
        shape[rng.randrange(2)] = rng.choice([0, 1, T + 1, CONTEXT + 1, 2 * CONTEXT])
    dtype = torch.int64 if rng.random() < 0.5 else rng.choice(DTYPES)
    high = valid_high
    v = rng.random()
    low = 0
    if v < 0.2:
        low, high = -5, 0
    elif v < 0.4:
        low, high = valid_high, valid_high + 3
    elif v < 0.5:
        low, high = 2**31 - 2, 2**31
    numel = 1
    for n in shape:
        numel *= n
    if numel > 10_000:  # keep it small
        shape = [2, 2]
    x = torch.randint(low, high, shape, dtype=torch.int64) if high > low else torch.zeros(shape)
    return x.to(dtype) if dtype != torch.bool else x.bool()


def draw_case(rng: random.Random, kind: str, model) -> dict:
    B, T = rng.randint(1, 3), rng.randint(1, CONTEXT)
    names = ["input_ids"] + [n for n in INPUTS[1:] if rng.random() < 0.08]
    if kind == "encoder_decoder" and rng.random() < 0.8:
        names.append("decoder_input_ids")
    highs = {"input_ids": VOCAB, "decoder_input_ids": VOCAB, "attention_mask": 2,
             "decoder_attention_mask": 2, "token_type_ids": 2, "position_ids": CONTEXT,
             "decoder_position_ids": CONTEXT, "document_ids": 3, "cache_position": CONTEXT}
    case: dict = {}
    for name in dict.fromkeys(names):
        if name == "past_key_values":
            case[name] = (model.new_cache(rng.randint(1, 3), rng.choice([1, 4, CONTEXT]))
                          if model is not None and rng.random() < 0.8 else rng.choice([{}, 0]))
        elif name == "pixel_values":
            case[name] = torch.randn(B, 3, 4, 4)
        elif name == "cache_position":
            case[name] = torch.arange(T) + rng.choice([0, 0, 2, CONTEXT - 1, -1])
        else:
            case[name] = draw_tensor(rng, B, T, highs[name])
    return case


def describe(case: dict) -> dict:
    return {k: (f"{tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}"
                if isinstance(v, torch.Tensor) else type(v).__name__) for k, v in case.items()}


def main() -> int:
    kind, backends, cases, seed = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    eager = txdsl.build(SPECS[kind], base_dir=SPECS_DIR, backend="eager", seed=0).module.eval()
    for backend in backends:
        model = eager
        if backend == "aot":
            out_dir = Path(sys.argv[5])
            txdsl.build(SPECS[kind], base_dir=SPECS_DIR, backend="aot", output=out_dir, seed=0)
            model = txdsl.load(out_dir)
        rng = random.Random(seed)
        for n in range(cases):
            run_case(n, backend, draw_case(rng, kind, eager), model, eager)
    return 0


def run_case(n: int, backend: str, case: dict, model, eager) -> None:
    print(f"start {backend} {n} {json.dumps(describe(case))}", flush=True)
    record = {"backend": backend, "case": n, "inputs": describe(case)}
    try:
        with torch.no_grad():
            out = model(**case)
        detail = check_output(out, case, eager, backend)
        record.update(outcome="wrong" if detail else "ok", detail=detail)
    except (ValueError, TypeError) as exc:
        record.update(outcome="refused", error=type(exc).__name__, detail=str(exc))
    except Exception as exc:  # noqa: BLE001 - what the test is looking for
        record.update(outcome="wrong", error=type(exc).__name__, detail=str(exc)[:500])
    print(json.dumps(record), flush=True)


def check_output(out, case: dict, eager, backend: str) -> str:
    """'' if ``out`` is right for ``case``, else what is wrong."""
    ids = case.get("decoder_input_ids", case.get("input_ids"))
    want = (ids.shape[0], ids.shape[1], VOCAB)
    logits = out.logits if hasattr(out, "logits") else out["logits"]
    if tuple(logits.shape) != want:
        return f"logits have shape {tuple(logits.shape)}, expected {want}"
    if not torch.isfinite(logits).all():
        return "logits are not finite"
    if backend == "aot":
        with torch.no_grad():
            ref = eager(**case).logits
        if not torch.allclose(logits, ref, atol=1e-4, rtol=1e-4):
            return f"differs from eager by {(logits - ref).abs().max().item():.3g}"
    return ""


if __name__ == "__main__":
    sys.exit(main())
