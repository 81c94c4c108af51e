"""``txdsl generate SPEC|DIR --prompt-ids 1,2,3 --max-new-tokens N``: a quick look at decoding.

A ``.tx`` SPEC is built with random weights from ``--seed``; a DIR is a
built artifact, loaded (and, with ``--backend``, re-lowered for another
backend). Prints the token ids, prompt first, comma-separated, on one line.
An ``inductor`` build decodes with its compiled step
(:mod:`txdsl.runtime.decode`); ``eager`` with the eager one.

Refused before anything is built: an empty or malformed ``--prompt-ids``
(exit 2), ids outside the vocabulary, an encoder-only model, a model without
token inputs (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .build_cmd import _seed
from .main import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "generate", help="decode tokens from a prompt with a spec or an artifact",
        description="Build SPEC with random weights (or load the artifact DIR) and decode "
                    "--max-new-tokens tokens after --prompt-ids; prints the token ids.")
    p.add_argument("source", metavar="SPEC|DIR", help="a .tx file or an artifact directory")
    p.add_argument("--prompt-ids", required=True, metavar="IDS", type=_ids,
                   help="the prompt's token ids, comma-separated (e.g. 1,2,3)")
    p.add_argument("--max-new-tokens", required=True, type=_count, metavar="N",
                   help="tokens to decode after the prompt")
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="eager or inductor (compiled decode step); default: eager for a "
                        "SPEC, the artifact's own backend for a DIR")
    p.add_argument("--model", metavar="NAME", help="which model of the file (default: the last)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default=None, choices=["cpu", "cuda"],
                   help="default: cpu for a SPEC, the artifact's device for a DIR")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of a SPEC's random weights and of sampling (default 0)")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy argmax")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, (0, 1]")
    p.add_argument("--eos-token-id", type=int, default=None, metavar="ID",
                   help="stop a row at this id (the others continue; then stop)")
    p.add_argument("--decoder-start-token-id", type=int, default=0, metavar="ID",
                   help="an encoder-decoder model's first decoder token (default 0)")
    p.set_defaults(run=run)


def _ids(text: str) -> list[int]:
    """``--prompt-ids``: comma-separated integers, at least one."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError("the prompt is empty: give at least one token id")
    try:
        return [int(t) for t in items]
    except ValueError:
        bad = next(t for t in items if not t.lstrip("-").isdigit())
        raise argparse.ArgumentTypeError(f"'{bad}' is not a token id (comma-separated "
                                         "integers, e.g. 1,2,3)") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def check_model(ir, ids: list[int]) -> str | None:
    """Why ``ir`` can't decode from ``ids`` (None: it can)."""
    vocab = ir.embedding.tokens
    if vocab is None:
        return f"{ir.name} takes no token ids (its embedding has no tokens = ...)"
    if ir.decoder is None:
        return (f"{ir.name} is encoder-only: generate needs a decoder stack (a causal LM or "
                "an encoder-decoder model)")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        return (f"--prompt-ids: {bad[0]} is not in the vocabulary of {ir.name} "
                f"({vocab} ids: 0..{vocab - 1})")
    return None


def _runnable(args: argparse.Namespace):
    """(IR, what decodes: a Built or a loaded module with ``generate``) for the source."""
    from ..back.builder import build
    from ..back.load import load_artifact
    from ..ir import ModelIR

    source = Path(args.source)
    if source.is_dir():
        art = load_artifact(source, backend=args.backend, device=args.device)
        if not hasattr(art.module, "generate"):  # a self-contained program (aot, onnx)
            art = load_artifact(source, backend="eager", device=args.device)
        return art.ir, lambda: art.module
    from ..front.resolve import parse_file

    ir: ModelIR = parse_file(source, model=args.model)
    return ir, lambda: build(ir, backend=args.backend or "eager", dtype=args.dtype,
                             device=args.device or "cpu", seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from ..back.backends import BuildError

    source = Path(args.source)
    if not source.exists():
        raise UsageError(f"{args.source}: no such spec file or artifact directory")
    try:
        ir, make = _runnable(args)
        problem = check_model(ir, args.prompt_ids)
        if problem is not None:
            print(f"txdsl: error: {problem}", file=sys.stderr)
            return 1
        model = make()
    except BuildError as exc:
        print(f"txdsl: error: {exc}", file=sys.stderr)
        return 1
    import torch

    if hasattr(model, "target"):  # a Built
        device = model.target.device
    else:  # a loaded module
        param = next(model.parameters(), None)
        device = param.device if param is not None else args.device
    ids = torch.tensor([args.prompt_ids], dtype=torch.long, device=device)
    generator = torch.Generator(device=ids.device).manual_seed(args.seed)
    try:
        out = model.generate(ids, args.max_new_tokens, do_sample=args.do_sample,
                             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                             eos_token_id=args.eos_token_id, generator=generator,
                             decoder_start_token_id=args.decoder_start_token_id)
    except (ValueError, TypeError) as exc:  # the model's own checks (context, sampling)
        print(f"txdsl: error: {exc}", file=sys.stderr)
        return 1
    print(",".join(str(int(t)) for t in out[0].tolist()))
    return 0
