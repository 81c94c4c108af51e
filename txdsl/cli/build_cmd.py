"""``txdsl build SPEC``: build a model for a backend, write its artifact, try it once.

Prints the kernel plan (one line per op, ``--explain`` for every candidate),
then, unless ``--no-run``, the output shape of one forward pass on a small
random input of the right kind, and the artifact's path. Exit status: 0
built, 1 spec or build error, 2 usage error (an unknown backend, a malformed
``--kernel`` or ``--option``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..back.backends import BackendError, BuildError, get_backend, parse_options
from ..errors import did_you_mean
from ..plugins import get_registry
from ..registry import FAMILIES
from .main import UsageError

DEFAULT_OUTPUT = Path("artifacts")
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # as txdsl.back.builder (not imported: torch is slow)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build", help="build a spec for a backend and write an artifact",
        description="Parse, select kernels, construct, lower with a backend and write an "
                    "artifact directory (manifest.json, weights.safetensors, spec.tx and the "
                    "backend's files); then run one forward pass on a random input.")
    p.add_argument("spec", metavar="SPEC", help="a .tx file")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="artifact directory (default: artifacts/<model name>/)")
    p.add_argument("--model", metavar="NAME", help="which model of the file (default: the last)")
    p.add_argument("--backend", default="eager", metavar="NAME",
                   help="eager, inductor, aot, onnx, tensorrt, or one a plugin adds "
                        "(default: eager; `txdsl plugins` lists them)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--weights", metavar="FILE", help="a .safetensors file to load (strictly)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the initial weights (default 0; below 2**64)")
    p.add_argument("--kernel", action="append", default=[], metavar="FAMILY[.KIND]=IMPL",
                   help="force an implementation, e.g. attention=reference (repeatable)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option, e.g. mode=max-autotune-no-cudagraphs (repeatable)")
    p.add_argument("--quantize", metavar="SCHEME",
                   help="weight-only quantization: int8-weight or int4-weight (CPU; the "
                        "accuracy cost vs float32 is measured and recorded in the manifest)")
    p.add_argument("--explain", action="store_true", help="print every candidate kernel and why")
    p.add_argument("--no-run", action="store_true", help="don't run a forward pass")
    p.add_argument("--no-cache", action="store_true",
                   help="export and compile again, even if the build cache holds this build "
                        "(aot, onnx; the cache: $TXDSL_CACHE_DIR or ~/.cache/txdsl)")
    p.set_defaults(run=run)


def _seed(text: str) -> int:
    """``--seed``: an integer torch accepts (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if not SEED_MIN <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range (from {SEED_MIN} to "
                                         f"{SEED_MAX}, 64 bits)")
    return value


def _kernels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, impl = item.partition("=")
        key, impl = key.strip(), impl.strip()
        if not sep or not key or not impl:
            raise UsageError(f"--kernel '{item}' is not FAMILY[.KIND]=IMPL "
                             "(e.g. attention=reference)")
        family, _, kind = key.partition(".")
        if family not in FAMILIES:
            raise UsageError(f"--kernel '{item}': unknown family '{family}' "
                             f"(families: {', '.join(FAMILIES)})")
        if kind and not get_registry().has(family, kind):
            kinds = get_registry().kinds(family)
            raise UsageError(f"--kernel '{item}': unknown {family} '{kind}'; "
                             f"{did_you_mean(kind, kinds) or 'none are installed'}")
        out[key] = impl
    return out


def _check_quantize(scheme: str | None) -> None:
    """``--quantize``: a known scheme (a usage error, exit 2, with "did you mean")."""
    from ..back.quantize import SCHEMES, unknown_scheme

    if scheme is not None and scheme not in SCHEMES:
        raise UsageError(unknown_scheme(scheme))


def _describe(tensor) -> str:
    return f"({', '.join(str(d) for d in tensor.shape)}) {str(tensor.dtype).removeprefix('torch.')}"


def _run_once(built) -> str:
    import torch

    from ..back.backends import output_tensors

    inputs = built.example_inputs  # the shape it was lowered for: no recompilation
    with torch.no_grad():
        out = output_tensors(built(**inputs))
    given = ", ".join(f"{k} {_describe(v)}" for k, v in inputs.items())
    if not out:
        return f"ran on {given}: no tensor outputs"
    name = "logits" if "logits" in out else next(iter(out))
    return f"ran on {given}\noutput: {name} {_describe(out[name])}"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> int:
    from ..back.builder import build

    force = _kernels(args.kernel)
    _check_quantize(args.quantize)
    try:
        backend = get_backend(args.backend, get_registry())
        options = parse_options(backend, args.option)
    except BackendError as exc:
        raise UsageError(str(exc)) from None
    output = Path(args.output) if args.output else (lambda ir: DEFAULT_OUTPUT / ir.name)
    try:
        built = build(args.spec, backend=args.backend, output=output, dtype=args.dtype,
                      device=args.device, weights=args.weights, seed=args.seed,
                      model=args.model, force_kernels=force, options=options,
                      cache=not args.no_cache, quantize=args.quantize)
    except BuildError as exc:
        print(f"txdsl: error: {exc}", file=sys.stderr)
        return 1

    print(f"built {built.ir.name} for {built.backend} ({built.target.device}, "
          f"{built.target.dtype})" + (" (cached)" if built.cached else ""))
    if args.explain:
        print(built.plan.explain())
    else:
        for c in built.plan.choices:
            print(f"  {c.family} {c.kind} -> {c.impl} (plugin {c.plugin})")
    if built.quantization is not None:
        from ..back.quantize import summary

        print(summary(built.quantization))
    status = 0
    if not args.no_run:
        try:
            print(_run_once(built))
        except BuildError as exc:
            print(f"txdsl: error: the forward pass failed: {exc}", file=sys.stderr)
            status = 1
    print(f"artifact: {_shown(built.artifact)}")
    return status
