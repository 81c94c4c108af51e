"""What an implementation runs on, and what its factory receives."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

from .args import Dims


@dataclass(frozen=True)
class Target:
    """What a build is for."""

    device: str = "cpu"  # "cpu" or "cuda"
    dtype: str = "float32"  # "float32", "bfloat16", "float16"
    backend: str = "eager"
    cuda_capability: tuple[int, int] | None = None


@dataclass(frozen=True)
class Targets:
    """What an implementation supports. ``None`` means any."""

    devices: frozenset[str] | None = None
    dtypes: frozenset[str] | None = None
    backends: frozenset[str] | None = None
    min_cuda_capability: tuple[int, int] | None = None
    requires: tuple[str, ...] = ()  # importable modules it needs, e.g. ("triton",)
    # Conditions the fields above can't say (e.g. "on CPU only compiled"): target -> reasons against.
    check: Callable[[Target], list[str]] | None = None

    def reasons_against(self, target: Target) -> list[str]:
        """Why this implementation can't serve ``target`` (empty: it can)."""
        out = []
        if self.devices is not None and target.device not in self.devices:
            out.append(f"device {target.device} not in {sorted(self.devices)}")
        if self.dtypes is not None and target.dtype not in self.dtypes:
            out.append(f"dtype {target.dtype} not in {sorted(self.dtypes)}")
        if self.backends is not None and target.backend not in self.backends:
            out.append(f"backend {target.backend} not in {sorted(self.backends)}")
        if self.min_cuda_capability is not None:
            cap = target.cuda_capability
            if cap is None or cap < self.min_cuda_capability:
                out.append(f"needs CUDA capability >= {self.min_cuda_capability}")
        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:
                out.append(f"needs the '{mod}' package")
        if self.check is not None:
            out.extend(self.check(target))
        return out


@dataclass
class BuildContext:
    """What a factory receives besides its arguments.

    ``dims``: the dimensions to build for; ``shared``: modules other
    components may reuse (``"token_embedding"``: the ``nn.Embedding`` a tied
    head shares its weight with); ``target``: what the build is for.
    """

    dims: Dims
    target: Target = field(default_factory=Target)
    shared: dict[str, Any] = field(default_factory=dict)
