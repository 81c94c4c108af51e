"""Built-in Hugging Face mappings, one module per architecture family.

Each module declares an :class:`txdsl.interop.HFFamily`: the HF classes it
converts, the zoo spec the generated spec extends, and one list of key rules
used by both ``txdsl.from_hf`` and ``txdsl.to_hf``.
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .gpt2 import GPT2

FAMILIES = [GPT2]


@hookimpl
def register_hf_mappings(register):
    for family in FAMILIES:
        register(family())
