"""``eager``: the constructed module itself, run op by op by PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from txdsl.backends import BackendOptions
from txdsl.sdk.targets import Target


class EagerOptions(BackendOptions):
    """``eager`` takes no options."""


class EagerBackend:
    name = "eager"
    description = "the constructed nn.Module, unchanged (PyTorch eager mode)"
    options_model = EagerOptions
    self_contained = False

    def available(self, target: Target | None = None) -> str | None:
        return None

    def lower(self, module: Any, example_inputs: dict, options: EagerOptions) -> Any:
        return module

    def save(self, lowered: Any, directory: Path) -> None:
        """Nothing beyond the weights and the manifest."""

    def load(self, directory: Path, module: Any, options: EagerOptions) -> Any:
        return module
