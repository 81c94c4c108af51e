"""The registry: every component kind and backend the installed plugins provide.

The host owns it. Plugins fill it through the hooks in :mod:`txdsl.hookspecs`;
the front end asks it for a kind's argument model, the selection pass for a
kind's implementations, the CLI for everything (``txdsl plugins``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel

from .sdk.args import ComponentArgs
from .sdk.targets import Targets

# Hook name -> the family its registrations belong to.
HOOK_FAMILIES = {
    "register_attention": "attention",
    "register_norms": "norm",
    "register_positions": "position",
    "register_ffns": "ffn",
    "register_heads": "head",
    "register_embeddings": "patches",
}
FAMILIES = tuple(HOOK_FAMILIES.values())


class RegistryError(Exception):
    """A plugin registered something inconsistent (a clash, a bad argument model)."""


@dataclass(frozen=True)
class Implementation:
    family: str
    name: str  # the kind, as written in specs
    args: type[ComponentArgs]
    build: Callable[..., Any] | None
    impl: str = "reference"
    targets: Targets = field(default_factory=Targets)
    priority: int = 0
    plugin: str = "?"
    doc: str = ""


@dataclass
class PluginInfo:
    name: str
    module: str
    version: str | None = None
    error: str | None = None  # why it failed to load or register, if it did
    registered: list[str] = field(default_factory=list)  # "attention:full[sdpa]", "backend:eager"


class Registry:
    def __init__(self) -> None:
        self._impls: dict[tuple[str, str], list[Implementation]] = {}
        self.backends: dict[str, Any] = {}
        self._backend_plugin: dict[str, str] = {}
        self.plugins: dict[str, PluginInfo] = {}

    # ------------------------------------------------------------ registering

    def add(self, impl: Implementation) -> None:
        if impl.family not in FAMILIES:
            raise RegistryError(f"unknown family '{impl.family}'")
        if not (isinstance(impl.args, type) and issubclass(impl.args, BaseModel)):
            raise RegistryError(f"{impl.family} '{impl.name}': args must be a pydantic model class")
        if impl.args.model_config.get("extra") != "forbid":
            raise RegistryError(f"{impl.family} '{impl.name}': args model must set extra='forbid'")
        existing = self._impls.setdefault((impl.family, impl.name), [])
        for other in existing:
            if other.args is not impl.args:
                raise RegistryError(
                    f"{impl.family} '{impl.name}' is registered by plugins '{other.plugin}' and "
                    f"'{impl.plugin}' with different argument models")
            if other.impl == impl.impl or (other.build is None) != (impl.build is None):
                raise RegistryError(
                    f"{impl.family} '{impl.name}' (implementation '{impl.impl}') is registered "
                    f"twice: by plugins '{other.plugin}' and '{impl.plugin}'")
        existing.append(impl)

    def add_backend(self, backend: Any, plugin: str) -> None:
        name = getattr(backend, "name", None)
        if not isinstance(name, str):
            raise RegistryError("a backend needs a string 'name'")
        if name in self.backends:
            raise RegistryError(f"backend '{name}' is registered twice: by plugins "
                                f"'{self._backend_plugin[name]}' and '{plugin}'")
        self.backends[name] = backend
        self._backend_plugin[name] = plugin

    # ---------------------------------------------------------------- asking

    def kinds(self, family: str) -> list[str]:
        return sorted(name for (fam, name) in self._impls if fam == family)

    def has(self, family: str, name: str) -> bool:
        return (family, name) in self._impls

    def args(self, family: str, name: str) -> type[ComponentArgs]:
        return self._impls[(family, name)][0].args

    def implementations(self, family: str, name: str) -> list[Implementation]:
        """The buildable implementations of a kind, best first."""
        impls = [i for i in self._impls.get((family, name), []) if i.build is not None]
        return sorted(impls, key=lambda i: (-i.priority, i.impl))

    def all(self) -> list[Implementation]:
        return [i for impls in self._impls.values() for i in impls]

