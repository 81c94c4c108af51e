"""``txdsl export-hf SPEC --weights FILE -o DIR``: a txdsl model to a Hugging Face directory.

Writes ``DIR/config.json`` and ``DIR/model.safetensors`` in HF's layout, which
``AutoModel*.from_pretrained(DIR)`` loads. Exit status: 0 written, 1 a spec
error or a model no HF family matches.
"""

from __future__ import annotations

import sys

from ..back.backends import BuildError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export-hf", help="write a model as a Hugging Face directory (config.json, safetensors)",
        description="Build SPEC with its weights and write config.json and model.safetensors "
                    "in Hugging Face's layout.")
    p.add_argument("spec", metavar="SPEC", help="a .tx file")
    p.add_argument("--weights", metavar="FILE", help="a .safetensors file (txdsl's layout)")
    p.add_argument("--model", metavar="NAME", help="which model of the file (default: the last)")
    p.add_argument("--arch", metavar="CLASS", help="the HF model class (default: detected)")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="the directory to write")
    p.set_defaults(run=run)


def run(args) -> int:
    import txdsl
    from ..interop import to_hf

    try:
        built = txdsl.build(args.spec, weights=args.weights, model=args.model, progress=False)
        config, state = to_hf(built.module, args.output, arch=args.arch)
    except BuildError as exc:
        print(f"txdsl: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}/config.json and model.safetensors "
          f"({config.architectures[0]}, {len(state)} tensors)")
    return 0
