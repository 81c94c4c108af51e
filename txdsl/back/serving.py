"""What an exported model takes: named dynamic axes and the check before it runs.

An exported file (``model.pt2``, ``model.onnx``) has a fixed signature:
every input by name, each of a fixed dtype and rank, some dimensions named
and free (``batch``, ``sequence``, ``decoder_sequence``), the rest fixed.
:func:`input_axes` says which dimension of an input varies; the manifest's
``inputs`` record them; :class:`InputSpec` refuses what the file can't take
before it runs (a compiled kernel given a bad input may abort the process),
and fills in the optional inputs the model call has and the file doesn't.
Re-exported by :mod:`txdsl.backends`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

BATCH, SEQUENCE, DECODER_SEQUENCE = "batch", "sequence", "decoder_sequence"


def input_axes(name: str, rank: int, floating: bool) -> list[str | None]:
    """The named dynamic dimensions of an exported input, ``None`` for fixed ones.

    Dim 0 of every input is ``batch``; dim 1 of a per-token input (2-D ids and
    masks, 3-D ``features``) is ``sequence``, or ``decoder_sequence`` for the
    ``decoder_*`` inputs of an encoder-decoder. Image pixels vary only in batch.
    """
    axes: list[str | None] = [None] * rank
    if rank:
        axes[0] = BATCH
    per_token = (rank == 2 and not floating) or (rank == 3 and name == "features")
    if per_token:
        axes[1] = DECODER_SEQUENCE if name.startswith("decoder_") else SEQUENCE
    return axes


class InputSpec:
    """What an exported model takes, checked before it runs: ``AOTModule`` and ``OnnxModule``.

    ``spec``: ``{name: {"shape": [...], "dtype": "int64", "axes": [...]}}``
    (the manifest's ``inputs``); a dimension with an axis name varies, every
    other one is fixed to the exported size. Without ``axes`` (older
    manifests), ``dynamic`` says whether :func:`input_axes` applies. Then
    ``limits`` (the model boundary of :mod:`txdsl.runtime.boundary`: ids in the
    vocabulary, lengths within the context, 0/1 masks) if given.

    ``attention_mask``, ``decoder_attention_mask`` and ``token_type_ids`` may be
    left out, as with the eager model (all ones, all zeros: :meth:`complete`);
    the file itself takes every input. A missing required input, an extra or a
    positional one is a ``TypeError``, and so is a wrong dtype or a non-tensor;
    a wrong rank or size a ``ValueError``; each names the input, what the file
    takes and what was given.
    """

    def __init__(self, spec: Mapping[str, Mapping[str, Any]], limits: Any = None,
                 dynamic: bool = True, what: str = "exported model"):
        self.spec, self.limits, self.dynamic, self.what = dict(spec), limits, dynamic, what

    def axes(self, name: str) -> list[str | None]:
        want = self.spec[name]
        if "axes" in want:
            return list(want["axes"])
        import torch

        shape = want["shape"]
        if not self.dynamic:
            return [None] * len(shape)
        return input_axes(name, len(shape), getattr(torch, want["dtype"]).is_floating_point)

    def describe(self, name: str) -> str:
        """``input_ids (batch, sequence) int64``."""
        shape = [a or n for a, n in zip(self.axes(name), self.spec[name]["shape"])]
        return f"{name} ({', '.join(str(d) for d in shape)}) {self.spec[name]['dtype']}"

    # Inputs a caller may leave out, as the eager model lets them: what they default to, and
    # the input whose batch and sequence they take (ones: every token real; zeros: segment 0).
    DEFAULTS = {"attention_mask": ("input_ids", 1), "token_type_ids": ("input_ids", 0),
                "decoder_attention_mask": ("decoder_input_ids", 1)}

    def complete(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """``inputs`` with the optional ones this file takes filled in (see :data:`DEFAULTS`):
        an exported graph has no optional inputs, the model call does."""
        import torch

        out = {k: v for k, v in inputs.items() if v is not None}
        for name, (source, fill) in self.DEFAULTS.items():
            if name not in self.spec or name in out:
                continue
            if name == "attention_mask" and "features" in self.spec:
                source = "features"
            ref = out.get(source)
            if isinstance(ref, torch.Tensor) and ref.ndim >= 2:
                out[name] = torch.full(tuple(ref.shape[:2]), fill, device=ref.device,
                                       dtype=getattr(torch, self.spec[name]["dtype"]))
        return out

    def check(self, args: tuple, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs to run the file with (:meth:`complete`), or a ``TypeError``/``ValueError``."""
        import torch

        names = ", ".join(self.spec)
        if args:
            raise TypeError(f"this {self.what} takes keyword inputs only ({names}), got "
                            f"{len(args)} positional")
        for name, value in inputs.items():
            if name not in self.spec and value is not None:
                raise TypeError(f"this {self.what} takes {names} (what it was exported with), "
                                f"not {name}")
        inputs = self.complete(inputs)
        for name, want in self.spec.items():
            if name not in inputs:
                raise TypeError(f"this {self.what} needs {name} (it takes "
                                f"{'; '.join(self.describe(n) for n in self.spec)})")
            value = inputs[name]
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            dtype = getattr(torch, want["dtype"])
            if value.dtype != dtype:
                raise TypeError(f"{name} has dtype {value.dtype}, but this {self.what} was "
                                f"exported for {dtype}; convert it with .to({dtype})")
            shape, axes = want["shape"], self.axes(name)
            if value.ndim != len(shape):
                raise ValueError(f"{name} must have {len(shape)} dimensions, "
                                 f"{self.describe(name)}, got shape {tuple(value.shape)}")
            if any(a is None and value.shape[d] != shape[d] for d, a in enumerate(axes)):
                raise ValueError(f"{name} must have shape {self.describe(name)} (named "
                                 f"dimensions vary), got {tuple(value.shape)}")
        if self.limits is None:
            self._agree(inputs)
        else:  # the model boundary: shapes that agree, ids, masks and lengths in range
            from txdsl.runtime.boundary import check_inputs

            floating = [getattr(torch, w["dtype"]) for w in self.spec.values()
                        if getattr(torch, w["dtype"]).is_floating_point]
            check_inputs(self.limits, inputs, dtype=floating[0] if floating else None,
                         cache_grows=False)
            self._agree(inputs)
        return inputs

    def _agree(self, inputs: Mapping[str, Any]) -> None:
        """Dimensions of one name (``batch``, ``sequence``) have one size across inputs."""
        seen: dict[str, tuple[str, int]] = {}
        for name in self.spec:
            for d, axis in enumerate(self.axes(name)):
                if axis is None:
                    continue
                size = int(inputs[name].shape[d])
                if axis in seen and seen[axis][1] != size:
                    first, n = seen[axis]
                    raise ValueError(f"{name} has {axis} {size} (dim {d}), but {first} has "
                                     f"{n}: inputs of one {axis} must agree")
                seen.setdefault(axis, (name, size))


def saved_inputs(directory: Path, module: Any = None, dynamic: bool = True,
                 what: str = "exported model") -> "InputSpec | None":
    """The :class:`InputSpec` of files a backend saved in ``directory``: an artifact (its
    ``manifest.json``) or a build-cache entry (its ``entry.json``); ``None`` for a directory
    that is neither.

    The limits are ``module``'s when it is given (the model rebuilt or just
    built), else the manifest IR's (a self-contained load, without plugins).
    """
    from ..runtime.boundary import Limits

    directory = Path(directory)
    limits = getattr(module, "limits", None)
    if (directory / "manifest.json").is_file():
        from ..ir import ModelIR
        from .artifact import read_manifest

        manifest = read_manifest(directory)
        if limits is None:
            limits = Limits.from_ir(ModelIR.model_validate(manifest.ir))
        return InputSpec(manifest.inputs, limits, dynamic, what)
    from .build_cache import ENTRY, read_entry

    if not (directory / ENTRY).is_file():
        return None  # bare files: they run unchecked, as the runtime itself would run them
    return InputSpec(read_entry(directory)["inputs"], limits, dynamic, what)
