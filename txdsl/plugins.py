"""Loading plugins: entry points of group ``txdsl``, isolated from each other.

Built-in plugins are found exactly as third-party ones are, through the
entry points the core package declares. A plugin that fails to import, or
raises inside a hook, is recorded with its error (``txdsl plugins`` shows
it) and the rest still load.

Environment:
- ``TXDSL_PLUGINS=a,b``: load only these plugins (by entry-point name);
- ``TXDSL_TRACE_PLUGINS=1``: log every hook call (logger ``txdsl.plugins``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from importlib import metadata
from types import ModuleType
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .registry import HOOK_FAMILIES, Implementation, PluginInfo, Registry, RegistryError
from .sdk.targets import Targets

log = logging.getLogger("txdsl.plugins")
ENTRY_POINT_GROUP = "txdsl"


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _selected(names: Iterable[str]) -> set[str] | None:
    raw = os.environ.get("TXDSL_PLUGINS", "").strip()
    if not raw:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def load_registry(modules: dict[str, ModuleType | Any] | None = None) -> Registry:
    """Load plugins and fill a registry.

    ``modules`` (name -> module) replaces entry-point discovery, for tests.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()

    if modules is None:
        eps = _entry_points()
        wanted = _selected(ep.name for ep in eps)
        for ep in eps:
            if wanted is not None and ep.name not in wanted:
                continue
            version = ep.dist.version if ep.dist is not None else None
            info = PluginInfo(name=ep.name, module=ep.value, version=version)
            registry.plugins[ep.name] = info
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not take the rest down
                info.error = f"failed to load: {type(exc).__name__}: {exc}"
                log.warning("txdsl plugin %r %s", ep.name, info.error)
    else:
        for name, module in modules.items():
            registry.plugins[name] = PluginInfo(name=name, module=getattr(module, "__name__", name))
            pm.register(module, name=name)

    for hook_name, family in HOOK_FAMILIES.items():
        for hookimpl in getattr(pm.hook, hook_name).get_hookimpls():
            _call(registry, hookimpl, family)
    for hookimpl in pm.hook.register_backends.get_hookimpls():
        _call(registry, hookimpl, "backend")
    return registry


def _call(registry: Registry, hookimpl: Any, family: str) -> None:
    """Call one plugin's hook on its own, so its failure is its own (not the others')."""
    plugin = hookimpl.plugin_name
    info = registry.plugins.setdefault(plugin, PluginInfo(name=plugin, module=plugin))
    if info.error:
        return

    def register_component(name: str, args: type, build: Any = None, *, impl: str = "reference",
                           targets: Targets | None = None, priority: int = 0,
                           doc: str | None = None) -> None:
        registry.add(Implementation(
            family=family, name=name, args=args, build=build, impl=impl,
            targets=targets or Targets(), priority=priority, plugin=plugin,
            doc=(doc or (args.__doc__ or "")).strip().split("\n\n")[0]))
        info.registered.append(f"{family}:{name}" + (f"[{impl}]" if build else "[declared]"))

    def register_backend(backend: Any) -> None:
        registry.add_backend(backend, plugin)
        info.registered.append(f"backend:{backend.name}")

    register = register_backend if family == "backend" else register_component
    if os.environ.get("TXDSL_TRACE_PLUGINS") == "1":
        log.warning("txdsl plugin %r: calling %s", plugin, hookimpl.function.__name__)
    try:
        hookimpl.function(register)
    except RegistryError as exc:
        info.error = str(exc)
        log.warning("txdsl plugin %r: %s", plugin, exc)
    except Exception as exc:
        info.error = f"raised in {hookimpl.function.__name__}: {type(exc).__name__}: {exc}"
        log.warning("txdsl plugin %r %s", plugin, info.error)


def plugin_module(name: str) -> ModuleType:
    """Import a plugin module by name (used by tests and ``txdsl plugins``)."""
    return importlib.import_module(name)


@functools.lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The registry filled by the installed plugins (loaded once per process).

    Only the public entry points (``txdsl.parse*``, ``txdsl.build``,
    ``txdsl.load``, the CLI) call this; every stage receives its registry.
    """
    return load_registry()
