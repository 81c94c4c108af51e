"""Built-in Hugging Face mappings, one module per architecture family.

Each module declares an :class:`txdsl.interop.HFFamily`: the HF classes it
converts, the zoo spec the generated spec extends, and one list of key rules
used by both ``txdsl.from_hf`` and ``txdsl.to_hf``; a new family is one more
module and one more line here.
"""

from __future__ import annotations

from txdsl.hookspecs import hookimpl

from .albert import ALBERT
from .bert import BERT, RoBERTa
from .deberta import DeBERTaV2
from .electra import ELECTRA
from .gpt2 import GPT2
from .llama import LLaMA
from .mistral import Mistral
from .qwen2 import Qwen2
from .t5 import T5
from .vit import ViT
from .xlnet import XLNet

FAMILIES = [GPT2, BERT, RoBERTa, ALBERT, ELECTRA, T5, ViT, LLaMA, Mistral, Qwen2, XLNet,
            DeBERTaV2]


@hookimpl
def register_hf_mappings(register):
    for family in FAMILIES:
        register(family())
