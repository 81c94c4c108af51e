"""``txdsl schema``: the JSON Schema of the model IR, for editors and tools."""

from __future__ import annotations

import argparse
import json

from ..ir import ModelIR


def add_parser(sub) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of the model IR")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(ModelIR.model_json_schema(mode="serialization"), indent=2))
    return 0
