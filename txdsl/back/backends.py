"""Backends: what a constructed model is lowered to before it runs.

A backend is a plain object a plugin registers from ``register_backends``
(:mod:`txdsl.hookspecs`); the built-in ones live in ``plugins/txdsl_backends``
(``eager``, ``inductor``, ``aot``, ``onnx``, ``tensorrt``). It follows
:class:`Backend`:

- ``available(target)`` says *before any work* why it can't run here (a
  missing package, no CUDA), or ``None``;
- ``options_model`` is a pydantic model (``extra="forbid"``) of its options,
  which the CLI fills from ``--option key=value``;
- ``lower(module, example_inputs, options)`` returns a callable taking the
  same keyword inputs as the module (``input_ids=...``);
- ``save(lowered, directory)`` writes the files the artifact needs beside the
  weights and the manifest (``model.pt2``, ``model.onnx``); ``load(directory,
  module, options)`` gets a callable back (``module`` is the model rebuilt
  from the manifest, or ``None`` for a ``self_contained`` backend, whose files
  run without the spec, the plugins or the weights).

This module also holds what backends share: option parsing, the errors, and
the conversion of a model's output to plain tensors for exporters.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import did_you_mean
from ..sdk.targets import Target

if TYPE_CHECKING:  # torch is imported lazily: `txdsl plugins` should not pay for it
    from torch import Tensor, nn
    from ..registry import Registry

Lowered = Callable[..., Any]
DTYPES = ("float32", "bfloat16", "float16")


class BuildError(Exception):
    """A build can't go on for a reason that is not a mistake in the spec
    (an unavailable backend or device, bad weights, a failed lowering)."""


class BackendError(BuildError):
    """A backend is unknown, can't run here, refused its options, or failed."""


class BackendOptions(BaseModel):
    """Base of backend option models: strict, so a typo in ``--option`` is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class Backend(Protocol):
    """What ``register_backends`` registers (see the module docstring)."""

    name: str
    description: str
    options_model: type[BaseModel]
    self_contained: bool  # True: load() needs only the files save() wrote

    def available(self, target: Target | None = None) -> str | None: ...

    def lower(self, module: "nn.Module", example_inputs: dict[str, "Tensor"],
              options: BaseModel) -> Lowered: ...

    def save(self, lowered: Lowered, directory: Path) -> None: ...

    def load(self, directory: Path, module: "nn.Module | None", options: BaseModel) -> Lowered: ...


# ---------------------------------------------------------------- finding one


def get_backend(name: str, registry: "Registry") -> Backend:
    """The backend registered as ``name``; :class:`BackendError` listing the installed ones."""
    try:
        backend = registry.backends[name]
    except KeyError:
        hint = did_you_mean(name, registry.backends) or "(no backends are installed)"
        raise BackendError(f"unknown backend '{name}'; {hint}") from None
    missing = [a for a in ("available", "lower", "options_model") if not hasattr(backend, a)]
    if missing:
        raise BackendError(f"backend '{name}' does not follow txdsl.back.backends.Backend: it has no "
                           f"{', '.join(missing)} (a bug in the plugin that registers it)")
    return backend


def availability(backend: Backend, target: Target | None = None) -> str | None:
    """Why ``backend`` can't run for ``target`` (``None``: it can).

    ``target`` ``None`` asks about this machine in general. Backends whose
    ``available()`` takes no target (as the hookspec first had it) work too.
    """
    import inspect

    try:
        takes_target = bool(inspect.signature(backend.available).parameters)
    except (TypeError, ValueError):
        takes_target = True
    return backend.available(target) if takes_target else backend.available()


def check_available(backend: Backend, target: Target) -> None:
    """Raise :class:`BackendError` with the backend's reason if it can't run for ``target``."""
    reason = availability(backend, target)
    if reason:
        raise BackendError(f"backend '{backend.name}' can't run here: {reason}")


def backend_info(backend: Backend, target: Target | None = None) -> dict[str, Any]:
    """A JSON-able description: name, description, availability, option schema."""
    reason = availability(backend, target)
    options = getattr(getattr(backend, "options_model", None), "model_fields", {})
    return {"name": backend.name, "description": getattr(backend, "description", ""),
            "available": reason is None, "reason": reason, "options": sorted(options)}


def make_target(device: str, dtype: str, backend: str) -> Target:
    """The :class:`Target` of a build; :class:`BuildError` for an unknown dtype or device,
    or ``cuda`` without CUDA."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise BuildError(f"unknown device '{device}' (use cpu or cuda)") from None
    if kind not in ("cpu", "cuda"):
        raise BuildError(f"device '{device}' is not supported (use cpu or cuda)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BuildError(f"device '{device}' needs CUDA, but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}); build for --device cpu")
    if dtype not in DTYPES:
        raise BuildError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPES)})")
    capability = torch.cuda.get_device_capability(device) if kind == "cuda" else None
    return Target(device=kind, dtype=dtype, backend=backend, cuda_capability=capability)


# ---------------------------------------------------------------- options


def parse_option_strings(items: Sequence[str]) -> dict[str, Any]:
    """``["mode=max-autotune", "options.max_autotune=true"]`` -> a nested dict.

    A value is read as JSON when it is JSON (``true``, ``3``, ``null``,
    ``{"a": 1}``), else kept as the string; a dotted key sets a nested field.
    Raises :class:`ValueError` on an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"option '{item}' is not key=value")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if raw.strip().lower() in ("none", "true", "false") and isinstance(value, str):
            value = {"none": None, "true": True, "false": False}[raw.strip().lower()]
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"option '{item}': '{part}' is set both as a value and a group")
        node[last] = value
    return out


def parse_options(backend: Backend, options: Mapping[str, Any] | Sequence[str] | BaseModel
                  | None) -> BaseModel:
    """Validate options for ``backend``: a mapping, ``key=value`` strings, or a model."""
    model = backend.options_model
    if isinstance(options, model):
        return options
    if isinstance(options, BaseModel):
        options = options.model_dump()
    if options is None:
        options = {}
    elif not isinstance(options, Mapping):
        try:
            options = parse_option_strings(list(options))
        except ValueError as exc:
            raise BackendError(f"backend '{backend.name}': {exc}") from None
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        known = ", ".join(sorted(model.model_fields)) or "none"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())
        raise BackendError(f"backend '{backend.name}' options: {problems} "
                           f"(its options: {known})") from None


# ---------------------------------------------------------------- outputs


class Outputs(dict):
    """A model's outputs as a dict that also reads as attributes (``out.logits``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def output_tensors(output: Any) -> dict[str, "Tensor"]:
    """The tensors of a model output (a tensor, dict, dataclass or named tuple), by name.

    Tensors in a dict field are included as ``field.key``; a tensor that is
    already included under another name (``heads.lm`` is ``logits``) once.
    """
    import torch

    if isinstance(output, torch.Tensor):
        return {"logits": output}
    if isinstance(output, Mapping):
        items = list(output.items())
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        items = [(f.name, getattr(output, f.name)) for f in dataclasses.fields(output)]
    elif hasattr(output, "_asdict"):
        items = list(output._asdict().items())
    elif hasattr(output, "__dict__"):
        items = list(vars(output).items())
    else:
        raise TypeError(f"can't read tensors from a {type(output).__name__} output")
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def add(name: str, value: Any) -> None:
        if isinstance(value, torch.Tensor) and id(value) not in seen:
            seen.add(id(value))
            out[name] = value

    for key, value in items:  # top-level tensors first: they name a tensor best
        add(key, value)
    for key, value in items:  # then dicts of tensors (``heads``), flattened as "heads.lm"
        if isinstance(value, Mapping):
            for sub, v in value.items():
                add(f"{key}.{sub}", v)
    return out


def tensor_outputs(module: "nn.Module") -> "nn.Module":
    """Wrap ``module`` so its forward returns a plain ``dict`` of tensors.

    Exporters (``torch.export``, ONNX) need outputs they can flatten; the
    model's own output type may be a class they don't know.
    """
    from torch import nn

    class TensorOutputs(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, **inputs: Any) -> dict[str, Any]:
            return output_tensors(self.inner(**inputs))

    return TensorOutputs(module)


def input_spec(example_inputs: Mapping[str, "Tensor"], dynamic: bool = False,
               ) -> dict[str, dict[str, Any]]:
    """``{"input_ids": {"shape": [2, 16], "dtype": "int64"}}``, for manifests.

    ``dynamic``: each input also lists its ``axes`` (:func:`input_axes`), the
    names of the dimensions that vary (``None`` for a fixed one)."""
    spec = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in example_inputs.items()}
    if dynamic:
        for k, v in example_inputs.items():
            spec[k]["axes"] = input_axes(k, v.ndim, v.dtype.is_floating_point)
    return spec


from .serving import (BATCH, DECODER_SEQUENCE, SEQUENCE, InputSpec, input_axes,  # noqa: E402
                      saved_inputs)
