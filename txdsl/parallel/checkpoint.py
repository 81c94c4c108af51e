"""Sharded weights through ``torch.distributed.checkpoint``, in safetensors files only.

:func:`save_sharded` writes each rank's shards with PyTorch's
``HuggingFaceStorageWriter`` (``save_distributed=True``): one
``shard-0000N-model-...safetensors`` per rank, each tensor's place in the
whole recorded as JSON in the file's safetensors header. There is no
``.metadata`` file: DCP's default ``FileSystemWriter`` pickles one, and
loading it would unpickle (txdsl never unpickles). :func:`load_sharded`
reads the headers back with ``HuggingFaceStorageReader`` and DCP copies each
rank's slices into its parameters, whatever their layout: saved at 2 ranks
under tensor parallelism, an artifact loads into 1 process, into FSDP2, or
into TP at another size (resharding).

Replicated tensors (norms under TP) are written once. A tied head's weight is
one parameter under two names: it is written (and read) once, under its first
name (``embedding.tokens.weight``), as safetensors refuses aliased tensors.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter


def save_sharded(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s state (plain, TP or FSDP2 parameters) under ``path``; every rank
    calls it (collective). Returns ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    writer = HuggingFaceStorageWriter(str(path), save_distributed=True)
    dcp.save(_unique_state(model), storage_writer=writer, no_dist=not _distributed())
    return path


def load_sharded(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Fill ``model``'s parameters (any layout, any world size; one process needs no
    process group) from the safetensors shards under ``path``, strictly: a missing
    tensor is an error. Every rank calls it (collective)."""
    path = Path(path)
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path}: no safetensors shards (written by save_sharded?)")
    state = _unique_state(model)
    with warnings.catch_warnings():  # one process is a documented use, not a surprise
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, storage_reader=HuggingFaceStorageReader(str(path)),
                 no_dist=not _distributed())
    return model


def _unique_state(model: nn.Module) -> dict:
    """``model.state_dict()`` without the later names of a parameter held twice (tied)."""
    state = model.state_dict()
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            state.pop(name, None)
        seen.add(id(param))
    return state


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()
