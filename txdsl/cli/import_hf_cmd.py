"""``txdsl import-hf DIR -o model.tx``: a Hugging Face checkpoint directory to a spec and weights.

Reads ``DIR/config.json`` and ``DIR/*.safetensors`` (never a pickle), writes
the generated spec (which ``extends`` a zoo spec) and the weights in txdsl's
layout (default: ``weights.safetensors`` next to the spec); then
``txdsl build model.tx --weights weights.safetensors`` builds it. Exit
status: 0 written, 1 a checkpoint that doesn't convert (the keys named).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..back.backends import BuildError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "import-hf", help="convert a Hugging Face checkpoint directory to a spec and weights",
        description="Convert a local Hugging Face model directory (config.json and "
                    "*.safetensors) to a .tx spec extending a zoo spec, and its weights to a "
                    "safetensors file in txdsl's layout.")
    p.add_argument("directory", metavar="DIR", help="a directory saved by save_pretrained")
    p.add_argument("-o", "--output", metavar="SPEC", required=True, help="the .tx file to write")
    p.add_argument("--weights", metavar="FILE",
                   help="where to write the weights (default: weights.safetensors next to SPEC)")
    p.add_argument("--name", default="imported", help="the model's name in the spec")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..back.weights import save_weights
    from ..interop import from_hf

    spec_path = Path(args.output)
    weights = Path(args.weights) if args.weights else spec_path.parent / "weights.safetensors"
    try:
        spec, module = from_hf(args.directory, name=args.name)
    except BuildError as exc:
        print(f"txdsl: error: {exc}", file=sys.stderr)
        return 1
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(spec)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_weights(module, weights)
    print(f"wrote {spec_path} and {weights}\n"
          f"build it: txdsl build {spec_path} --weights {weights}")
    return 0
