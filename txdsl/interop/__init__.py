"""Hugging Face interop: checkpoints in (:func:`from_hf`) and out (:func:`to_hf`), key
mappings declared by plugins (:mod:`.mapping`, :class:`HFFamily`), and txdsl attention
kinds registered into HF's ``AttentionInterface`` (:mod:`.attention`)."""

from __future__ import annotations

from .family import HFFamily
from .hf import HFImport, from_hf, load_hf_weights, to_hf
from .mapping import Fused, MappingError, Rename

__all__ = ["Fused", "HFFamily", "HFImport", "MappingError", "Rename", "from_hf", "load_hf_weights",
           "to_hf"]
