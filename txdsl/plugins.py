"""Loading plugins: entry points of group ``txdsl``, isolated from each other.

Built-in plugins are found exactly as third-party ones are, through the
entry points the core package declares. A plugin that fails to import, or
raises inside a hook, is recorded with its error (``txdsl plugins`` shows
it) and the rest still load.

Environment:
- ``TXDSL_PLUGINS=a,b``: load only these plugins (by entry-point name); a
  name that is not installed is reported (as a broken plugin, and logged);
- ``TXDSL_PREFER=a,builtin``: who wins a name two plugins register (see
  :mod:`txdsl.registry`); default: the built-in plugin;
- ``TXDSL_TRACE_PLUGINS=1``: log every hook call (logger ``txdsl.plugins``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import did_you_mean
from .registry import HOOK_FAMILIES, Implementation, PluginInfo, Registry, RegistryError
from .sdk.targets import Targets

log = logging.getLogger("txdsl.plugins")
ENTRY_POINT_GROUP = "txdsl"


def _entry_points() -> list[metadata.EntryPoint]:
    """Every entry point of group ``txdsl``: built-in ones first, then by name."""
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return sorted(eps, key=lambda ep: (not _is_builtin_ep(ep), ep.name))


def _is_builtin_ep(ep: metadata.EntryPoint) -> bool:
    return ep.dist is not None and (ep.dist.name or "").lower() == "txdsl"


@functools.lru_cache(maxsize=1)
def _builtin_modules() -> dict[str, str]:
    """Entry-point name -> module of the plugins the txdsl distribution itself declares."""
    try:
        dist = metadata.distribution("txdsl")
    except metadata.PackageNotFoundError:  # pragma: no cover - txdsl always is installed
        return {}
    return {ep.name: ep.value for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP}


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    return [n.strip() for n in raw.split(",") if n.strip()]


def load_registry(modules: dict[str, ModuleType | Any] | None = None) -> Registry:
    """Load plugins and fill a registry.

    ``modules`` (name -> module) replaces entry-point discovery, for tests; a
    name and module that the txdsl distribution declares counts as built in.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(prefer=_env_list("TXDSL_PREFER") or ())

    if modules is None:
        _load_entry_points(pm, registry)
    else:
        builtin = _builtin_modules()
        for name, module in modules.items():
            mod_name = getattr(module, "__name__", name)
            registry.plugins[name] = PluginInfo(name=name, module=mod_name,
                                                builtin=builtin.get(name) == mod_name)
            pm.register(module, name=name)
    _check_prefer(registry)

    for hook_name, family in HOOK_FAMILIES.items():
        for hookimpl in getattr(pm.hook, hook_name).get_hookimpls():
            _call(registry, hookimpl, family)
    for hookimpl in pm.hook.register_backends.get_hookimpls():
        _call(registry, hookimpl, "backend")
    for conflict in registry.conflicts:
        if not conflict.explicit:
            log.warning("txdsl plugins: %s; specs that use it are refused until TXDSL_PREFER "
                        "says which", conflict.message())
    return registry


def _load_entry_points(pm: pluggy.PluginManager, registry: Registry) -> None:
    """Register every installed plugin (or those TXDSL_PLUGINS names) with ``pm``."""
    eps = _entry_points()
    wanted = _env_list("TXDSL_PLUGINS")
    names = sorted({ep.name for ep in eps})
    for unknown in [n for n in wanted or [] if n not in names]:
        error = (f"not installed: TXDSL_PLUGINS names '{unknown}', but no installed plugin has "
                 f"that name; {did_you_mean(unknown, names) or 'none are installed'}")
        registry.plugins[unknown] = PluginInfo(name=unknown, module="?", error=error)
        log.warning("txdsl plugin %r %s", unknown, error)
    for ep in eps:
        if wanted is not None and ep.name not in wanted:
            continue
        version = ep.dist.version if ep.dist is not None else None
        info = PluginInfo(name=ep.name, module=ep.value, version=version,
                          builtin=_is_builtin_ep(ep))
        if ep.name in registry.plugins:  # two distributions declare one plugin name
            dist = ep.dist.name if ep.dist is not None else "?"
            key = f"{ep.name} ({dist})"
            info.name = key
            info.error = (f"not loaded: the plugin name '{ep.name}' is already taken by "
                          f"{registry.plugins[ep.name].module}; rename the entry point")
            registry.plugins[key] = info
            log.warning("txdsl plugin %r %s", key, info.error)
            continue
        registry.plugins[ep.name] = info
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not take the rest down
            info.error = f"failed to load: {type(exc).__name__}: {exc}"
            log.warning("txdsl plugin %r %s", ep.name, info.error)


def _check_prefer(registry: Registry) -> None:
    known = set(registry.plugins) | {"builtin", "plugin"}
    for token in registry.prefer:
        if token not in known:
            log.warning("txdsl plugins: TXDSL_PREFER names '%s', which is not a loaded plugin "
                        "(nor 'builtin' or 'plugin'); %s", token,
                        did_you_mean(token, sorted(known), "known"))


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

    def register_backend(backend: Any) -> None:
        registry.add_backend(backend, plugin)

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
