"""``from_hf`` and ``to_hf``: Hugging Face models and checkpoints in and out of txdsl.

``from_hf(model)`` reads an instantiated ``transformers`` model;
``from_hf("dir")`` a local directory with ``config.json`` and
``*.safetensors`` (never a pickle: a ``.bin`` checkpoint is refused with how
to convert it). Both return the generated spec text and the built txdsl module
with the weights in. ``to_hf(module)`` returns (and optionally writes) the HF
config and state dict. The family's declaration (``register_hf_mappings``)
does the per-architecture work; tying is read from the weights.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .family import HFFamily
from .mapping import MappingError, expand, load_strict, to_ours, to_theirs
from .registry import families


class HFImport(NamedTuple):
    spec: str  # the generated .tx text (extends a zoo spec)
    module: Any  # the built txdsl model (TxModel) with the checkpoint's weights


def _family(model_type: str) -> HFFamily:
    known = families()
    if model_type not in known:
        raise MappingError(f"no txdsl mapping for Hugging Face model_type '{model_type}' "
                           f"(supported: {', '.join(sorted(known))})")
    return known[model_type]


def read_checkpoint(directory: str | os.PathLike) -> tuple[Any, str, dict[str, torch.Tensor]]:
    """A local HF directory -> ``(config, model class name, tensors)``; safetensors only."""
    from safetensors.torch import load_file
    import transformers

    d = Path(directory)
    if not (d / "config.json").is_file():
        raise MappingError(f"{d}: no config.json (a Hugging Face model directory has one)")
    files = sorted(d.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in d.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        raise MappingError(
            f"{d}: no *.safetensors weights" + (f" (found {', '.join(pickles)}: a pickle, "
                                                 "which txdsl never loads)" if pickles else "")
            + "; convert it where you trust the file: model = AutoModel.from_pretrained(dir); "
              "model.save_pretrained(dir, safe_serialization=True)")
    raw = json.loads((d / "config.json").read_text())
    config = transformers.AutoConfig.for_model(**raw)
    arch = (raw.get("architectures") or [None])[0]
    if arch is None:
        raise MappingError(f"{d}/config.json names no architectures (the HF model class)")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(f)))
    return config, arch, tensors


def is_tied(tensors: dict[str, torch.Tensor], head: str, embedding: str, config: Any) -> bool:
    """Read from the weights: the same storage, or equal values; an absent head is tied
    only if the config says so (otherwise it is reported missing)."""
    if head not in tensors:
        return bool(getattr(config, "tie_word_embeddings", False)) and embedding in tensors
    a, b = tensors[head], tensors.get(embedding)
    if b is None or a.shape != b.shape:
        return False
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() or torch.equal(a, b)


def _read(source: Any) -> tuple[Any, str, dict[str, torch.Tensor], str]:
    """``(config, HF model class, tensors under the checkpoint's names, where)``."""
    if isinstance(source, (str, os.PathLike)):
        config, arch, tensors = read_checkpoint(source)
        return config, arch, tensors, str(source)
    config, arch = source.config, type(source).__name__
    tensors = dict(source.state_dict())
    family = _family(config.model_type)
    if family.in_memory:
        tensors = {_saved_name(k, family.in_memory): v for k, v in tensors.items()}
    return config, arch, tensors, arch


def _convert(config: Any, arch: str, tensors: dict[str, torch.Tensor]):
    """The family, whether the head is tied (read from the weights), and the rules' output
    ``(state under txdsl's names, missing HF keys, unexpected HF keys)``."""
    family = _family(config.model_type)
    family.check_arch(arch)
    prefix = family.bare.get(arch)
    if prefix:  # a base model's keys lack the prefix the rules are written with
        tensors = {prefix + k: v for k, v in tensors.items()}
    tied = family.tie is not None and is_tied(tensors, *family.tie, config)
    if tied:
        tensors = {k: v for k, v in tensors.items() if k != family.tie[0]}
    rules = expand(family.rules(config, arch, tied), family.counts(config))
    state, missing, unexpected = to_ours(rules, tensors, family.ignore)
    return family, tied, {k: v.detach() for k, v in state.items()}, missing, unexpected


def from_hf(source: Any, *, name: str = "imported", registry: Any = None) -> HFImport:
    """A HF model (instance) or local directory -> ``(spec text, built txdsl module)``."""
    import txdsl

    config, arch, tensors, where = _read(source)
    family, tied, state, missing, unexpected = _convert(config, arch, tensors)
    spec = family.spec(config, arch, tied, name)
    module = txdsl.build(spec, backend="eager", progress=False, registry=registry).module
    load_strict(module, state, source=where, missing_theirs=missing,
                unexpected_theirs=unexpected)
    return HFImport(spec, module.eval())


def load_hf_weights(module: Any, source: Any) -> None:
    """Load a HF model's (or directory's) weights into an already built txdsl ``module``,
    strictly (the parity tests and benchmarks build their own)."""
    config, arch, tensors, where = _read(source)
    _, _, state, missing, unexpected = _convert(config, arch, tensors)
    load_strict(module, state, source=where, missing_theirs=missing,
                unexpected_theirs=unexpected)


def _saved_name(key: str, renames) -> str:
    for pattern, repl in renames:
        new = re.sub(pattern, repl, key)
        if new != key:
            return new
    return key


def detect(module: Any) -> tuple[HFFamily, str]:
    """The family and HF model class of a built txdsl module."""
    found = [(f, arch) for f in families().values() if (arch := f.detect(module.ir))]
    if not found:
        raise MappingError(f"model '{module.ir.name}' matches no Hugging Face architecture "
                           f"txdsl converts (families: {', '.join(sorted(families()))})")
    return found[0]


def to_hf(module: Any, directory: str | os.PathLike | None = None, *,
          arch: str | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
    """A txdsl module -> ``(HF config, HF state dict)``; with ``directory``, written there
    (``config.json`` and ``model.safetensors``) so ``from_pretrained(directory)`` loads it."""
    import transformers

    family, found = detect(module)
    arch = arch or found
    family.check_arch(arch)
    kwargs = family.hf_config(module.ir, arch)
    config = transformers.AutoConfig.for_model(family.model_type, **kwargs)
    config.architectures = [arch]
    tied = bool(kwargs.get("tie_word_embeddings", False)) and family.tie is not None
    rules = expand(family.rules(config, arch, tied), family.counts(config))
    state = to_theirs(rules, {k: v.detach() for k, v in module.state_dict().items()})
    prefix = family.bare.get(arch)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items()}
    if directory is not None:
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(str(out))
        save_file({k: v.contiguous().cpu() for k, v in state.items()},
                  str(out / "model.safetensors"), metadata={"format": "pt"})
    return config, state
