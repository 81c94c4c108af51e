"""The registry: every component kind and backend the installed plugins provide.

The host owns it. Plugins fill it through the hooks in :mod:`txdsl.hookspecs`;
the front end asks it for a kind's argument model, the selection pass for a
kind's implementations, the CLI for everything (``txdsl plugins``).

Name conflicts: when two plugins register one name (a kind with another
argument model, the same implementation name, or a backend), one wins and
the other keeps everything else it registers. ``TXDSL_PREFER`` (plugin
names, ``builtin`` or ``plugin``) chooses; without it a built-in plugin wins,
and a spec that uses the contested name is refused (:meth:`Registry.conflict`)
so that installing a plugin never silently changes what a spec builds.
Another implementation of a kind (same argument model, a new ``impl``
name) is not a conflict: kernel selection chooses among them and says so.
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
    builtin: bool = False  # shipped with txdsl (declared by the txdsl distribution itself)
    conflicts: list[str] = field(default_factory=list)  # names it shares with another plugin


@dataclass(frozen=True)
class Conflict:
    """Two plugins register one name (``family`` is ``"backend"`` for backends).

    ``explicit``: ``TXDSL_PREFER`` chose the winner. Otherwise the default rule
    did (a built-in plugin wins; between two others, the first loaded), and a
    spec that uses the name is refused (:meth:`Registry.conflict`) rather than
    silently given one of the two.
    """

    family: str
    name: str
    winner: str
    loser: str
    why: str
    explicit: bool

    def message(self) -> str:
        return (f"{self.family} '{self.name}' is registered by two plugins, '{self.winner}' and "
                f"'{self.loser}'; '{self.winner}' is used ({self.why})")

    def error(self) -> str:
        return (f"{self.family} '{self.name}' is registered by two plugins, '{self.winner}' and "
                f"'{self.loser}', and nothing says which one to use")

    def hint(self) -> str:
        return (f"set TXDSL_PREFER={self.winner} or TXDSL_PREFER={self.loser} to choose one "
                f"(TXDSL_PREFER=builtin or =plugin choose by kind of plugin), or leave one out "
                f"with TXDSL_PLUGINS")


class Registry:
    """Kinds and backends by name, with the plugin that provides each.

    ``prefer``: plugin names, ``"builtin"`` or ``"plugin"`` (a third-party
    one), in order; the first that settles a name conflict decides it
    (``TXDSL_PREFER``). A plugin that loses a conflict keeps everything else
    it registers.
    """

    def __init__(self, prefer: tuple[str, ...] | list[str] = ()) -> None:
        self._impls: dict[tuple[str, str], list[Implementation]] = {}
        self.backends: dict[str, Any] = {}
        self._backend_plugin: dict[str, str] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.prefer = tuple(prefer)
        self.conflicts: list[Conflict] = []
        self._losers: dict[tuple[str, str], set[str]] = {}  # contested name -> who lost it

    # ------------------------------------------------------------ registering

    def add(self, impl: Implementation) -> bool:
        """Add ``impl``; ``False`` when it lost a name conflict (and was not added)."""
        if impl.family not in FAMILIES:
            raise RegistryError(f"unknown family '{impl.family}'")
        if not (isinstance(impl.args, type) and issubclass(impl.args, BaseModel)):
            raise RegistryError(f"{impl.family} '{impl.name}': args must be a pydantic model class")
        if impl.args.model_config.get("extra") != "forbid":
            raise RegistryError(f"{impl.family} '{impl.name}': args model must set extra='forbid'")
        key = (impl.family, impl.name)
        existing = self._impls.setdefault(key, [])
        if impl.plugin in self._losers.get(key, ()):
            return False  # it lost this name already; its other registrations of it go too
        mine = [o for o in existing if o.plugin == impl.plugin]
        for other in mine:  # one plugin's own registrations must agree
            if other.args is not impl.args or other.impl == impl.impl or \
                    (other.build is None) != (impl.build is None):
                raise RegistryError(
                    f"{impl.family} '{impl.name}' is registered twice by plugin '{impl.plugin}' "
                    f"(implementations '{other.impl}' and '{impl.impl}')")
        if existing and not mine and not _adds_implementation(existing, impl):
            same_model = all(o.args is impl.args for o in existing)
            rival = next((o.plugin for o in existing if o.impl == impl.impl and same_model),
                         existing[0].plugin)
            if self._settle(key, rival, impl.plugin) == rival:
                return False
            beaten = [o for o in existing if o.plugin == rival or not same_model]
            for old in beaten:
                existing.remove(old)
                self._unnote(old.plugin, _entry(old))
                if old.plugin != rival:
                    self._lost(key, impl.plugin, old.plugin)
        existing.append(impl)
        self._note(impl.plugin, _entry(impl))
        return True

    def add_backend(self, backend: Any, plugin: str) -> bool:
        """Add a backend; ``False`` when it lost a name conflict."""
        name = getattr(backend, "name", None)
        if not isinstance(name, str):
            raise RegistryError("a backend needs a string 'name'")
        key = ("backend", name)
        if plugin in self._losers.get(key, ()):
            return False
        if name in self.backends:
            owner = self._backend_plugin[name]
            if owner == plugin:
                raise RegistryError(f"backend '{name}' is registered twice by plugin '{plugin}'")
            if self._settle(key, owner, plugin) == owner:
                return False
            self._unnote(owner, f"backend:{name}")
        self.backends[name] = backend
        self._backend_plugin[name] = plugin
        self._note(plugin, f"backend:{name}")
        return True

    def _settle(self, key: tuple[str, str], first: str, second: str) -> str:
        """Decide a conflict between ``first`` (registered) and ``second``; the winner."""
        winner, why, explicit = self._decide(first, second)
        loser = second if winner == first else first
        self._losers.setdefault(key, set()).add(loser)
        self._record(Conflict(key[0], key[1], winner, loser, why, explicit))
        return winner

    def _lost(self, key: tuple[str, str], winner: str, loser: str) -> None:
        """``loser`` registered an implementation of a name ``winner`` took from another."""
        self._losers.setdefault(key, set()).add(loser)
        winner_, why, explicit = self._decide(winner, loser)
        self._record(Conflict(key[0], key[1], winner, loser, why,
                              explicit and winner_ == winner))

    def _decide(self, first: str, second: str) -> tuple[str, str, bool]:
        """(winner, why, chosen explicitly) for a conflict between two plugins."""
        builtin = {p: self._is_builtin(p) for p in (first, second)}
        for token in self.prefer:
            if token in (first, second):
                return token, f"TXDSL_PREFER={token}", True
            kind = {"builtin": True, "plugin": False}.get(token)
            matches = [p for p in (first, second) if kind is not None and builtin[p] == kind]
            if len(matches) == 1:
                return matches[0], f"TXDSL_PREFER={token}", True
        built = [p for p in (first, second) if builtin[p]]
        if len(built) == 1:
            return built[0], "a built-in plugin wins by default", False
        return first, "the first loaded wins by default", False

    def _is_builtin(self, plugin: str) -> bool:
        info = self.plugins.get(plugin)
        return bool(info and info.builtin)

    def _record(self, conflict: Conflict) -> None:
        self.conflicts.append(conflict)
        for plugin in (conflict.winner, conflict.loser):
            if plugin in self.plugins:
                self.plugins[plugin].conflicts.append(conflict.message())

    def _note(self, plugin: str, entry: str) -> None:
        if plugin in self.plugins:
            self.plugins[plugin].registered.append(entry)

    def _unnote(self, plugin: str, entry: str) -> None:
        info = self.plugins.get(plugin)
        if info is not None and entry in info.registered:
            info.registered.remove(entry)

    # ---------------------------------------------------------------- asking

    def kinds(self, family: str) -> list[str]:
        return sorted(name for (fam, name), impls in self._impls.items()
                      if fam == family and impls)

    def has(self, family: str, name: str) -> bool:
        return bool(self._impls.get((family, name)))

    def args(self, family: str, name: str) -> type[ComponentArgs]:
        return self._impls[(family, name)][0].args

    def implementations(self, family: str, name: str) -> list[Implementation]:
        """The buildable implementations of a kind, best first."""
        impls = [i for i in self._impls.get((family, name), []) if i.build is not None]
        return sorted(impls, key=lambda i: (-i.priority, i.impl))

    def all(self) -> list[Implementation]:
        return [i for impls in self._impls.values() for i in impls]

    def plugin_of(self, family: str, name: str) -> str | None:
        """The plugin that registers kind ``name`` (its first implementation's)."""
        impls = self._impls.get((family, name))
        return impls[0].plugin if impls else None

    def backend_plugin(self, name: str) -> str | None:
        return self._backend_plugin.get(name)

    def conflict(self, family: str, name: str) -> Conflict | None:
        """The conflict over ``name`` that nobody settled (``TXDSL_PREFER``), if any.

        Whatever uses such a name must refuse: which plugin it gets would
        otherwise depend on what else happens to be installed.
        """
        return next((c for c in self.conflicts
                     if (c.family, c.name) == (family, name) and not c.explicit), None)


def _entry(impl: Implementation) -> str:
    return f"{impl.family}:{impl.name}" + (f"[{impl.impl}]" if impl.build else "[declared]")


def _adds_implementation(existing: list[Implementation], impl: Implementation) -> bool:
    """``impl`` is another implementation of a kind another plugin owns, not a rival kind:
    the same argument model, a new implementation name (a Triton kernel for ``full``)."""
    return all(o.args is impl.args and o.impl != impl.impl and o.build is not None
               and impl.build is not None for o in existing)
