"""Weights files: a module's state as safetensors, tied tensors once, loaded strictly.

Nothing here unpickles: safetensors holds raw tensors and a JSON header.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import BuildError

if TYPE_CHECKING:
    from torch import nn


class WeightsError(BuildError):
    """A weights file doesn't fit the model: missing or unexpected keys, other shapes."""


def _tied_groups(state: dict[str, Any]) -> list[list[str]]:
    """Names in ``state`` that are one tensor (tied weights), in state order."""
    groups: dict[tuple, list[str]] = {}
    for name, t in state.items():
        if t.numel() == 0:
            key: tuple = ("empty", name)
        else:
            key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(),
                   tuple(t.shape), tuple(t.stride()))
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def save_weights(module: "nn.Module", path: str | os.PathLike) -> int:
    """Write ``module``'s state to safetensors, tied tensors once; returns how many are stored."""
    from safetensors.torch import save_model

    save_model(module, str(path))
    return sum(1 for _ in _tied_groups(module.state_dict()))


def load_weights(module: "nn.Module", path: str | os.PathLike) -> None:
    """Load a safetensors file into ``module``, strictly.

    Tied weights may be stored under any one of their names. Raises
    :class:`WeightsError` naming the file and the keys that are missing,
    unexpected, or of another shape; nothing is loaded then.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    state = module.state_dict()
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            missing, shapes, chosen = [], [], {}
            for group in _tied_groups(state):
                have = next((n for n in group if n in stored), None)
                if have is None:
                    missing.append(group[0] if len(group) == 1 else " = ".join(group))
                    continue
                want = tuple(state[group[0]].shape)
                if stored[have] != want:
                    shapes.append(f"{have}: file {list(stored[have])}, model {list(want)}")
                    continue
                for name in group:
                    chosen[name] = have
            unexpected = sorted(set(stored) - set(state))
            problems = []
            if missing:
                problems.append(f"missing keys: {', '.join(missing)}")
            if unexpected:
                problems.append(f"unexpected keys: {', '.join(unexpected)}")
            if shapes:
                problems.append(f"shape mismatch: {'; '.join(shapes)}")
            if problems:
                raise WeightsError(f"{path}: weights don't fit the model: " + "; ".join(problems))
            tensors = {k: f.get_tensor(k) for k in set(chosen.values())}
    except SafetensorError as exc:
        raise WeightsError(f"{path}: not a readable safetensors file: {exc}") from None
    module.load_state_dict({name: tensors[src] for name, src in chosen.items()}, strict=True)
