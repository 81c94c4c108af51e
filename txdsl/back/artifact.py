"""Artifact directories: what ``txdsl build -o DIR`` writes and :func:`load` reads.

An artifact is a directory::

    manifest.json        what was built, how, from what, and a sha256 of every file
    weights.safetensors  the weights (tied weights stored once, restored tied)
    spec.tx              the spec source (or, built from an IR, the IR as JSON)
    model.pt2 ...        whatever the backend saves (aot: an AOTInductor package)

It is written atomically: everything goes into a temporary directory beside
the destination, the manifest last, and the directory is renamed into place
only when complete; an existing artifact is replaced only then. A failed or
interrupted build leaves the previous artifact (or nothing), never a half.

Reading never unpickles: the manifest is JSON, weights are safetensors, and
every file's hash is checked before use (:class:`ArtifactError` names the
file that is missing or altered).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .backends import BuildError

if TYPE_CHECKING:
    from torch import nn

    from .backends import Backend
    from ..ir import ModelIR
    from ..registry import Registry
    from ..sdk.targets import Target

FORMAT = "txdsl-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
SPEC = "spec.tx"


class ArtifactError(BuildError):
    """An artifact directory can't be written or read: missing or altered files, bad manifest."""


class WeightsError(BuildError):
    """A weights file doesn't fit the model: missing or unexpected keys, other shapes."""


# ---------------------------------------------------------------- manifest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightsInfo(_Strict):
    file: str = WEIGHTS
    sha256: str
    tensors: int  # stored tensors (tied ones once)
    parameters: int  # parameter count of the model
    source: str | None = None  # the --weights file the build loaded, if any
    source_sha256: str | None = None


class SpecInfo(_Strict):
    file: str = SPEC
    format: Literal["tx", "ir-json"]
    source: str | None = None  # the spec file the build read, if any


class Versions(_Strict):
    txdsl: str
    torch: str
    python: str
    plugins: dict[str, str | None] = Field(default_factory=dict)


class Manifest(_Strict):
    format: Literal["txdsl-artifact"] = FORMAT
    format_version: int = FORMAT_VERSION
    created: str
    model: str
    ir: dict[str, Any]
    ir_hash: str  # sha256 of the IR's canonical JSON (ModelIR.hash())
    plan: dict[str, Any] | None  # the kernel plan (txdsl.back.select.KernelPlan)
    backend: str
    backend_options: dict[str, Any]
    self_contained: bool  # the backend's files run without spec, plugins or weights
    dtype: str
    device: str
    seed: int
    inputs: dict[str, dict[str, Any]]  # the example inputs lowered with: shape, dtype
    weights: WeightsInfo
    spec: SpecInfo
    versions: Versions
    files: dict[str, str]  # every file but the manifest -> sha256


# ---------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ir_json_hash(ir_json: dict[str, Any]) -> str:
    """The hash :meth:`ModelIR.hash` gives, computed from the IR's JSON dump."""
    text = json.dumps(ir_json, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- weights


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


# ---------------------------------------------------------------- writing


def check_destination(destination: str | os.PathLike) -> Path:
    """Refuse to overwrite something that isn't an artifact (before any work is done)."""
    dest = Path(destination).absolute()
    if dest.exists():
        if not dest.is_dir():
            raise ArtifactError(f"{dest}: exists and is not a directory")
        if any(dest.iterdir()) and not (dest / MANIFEST).is_file():
            raise ArtifactError(f"{dest}: refusing to replace a non-empty directory that is "
                                f"not a txdsl artifact (no {MANIFEST})")
    return dest


def _versions(registry: "Registry | None") -> Versions:
    import torch

    from .. import __version__

    plugins = {}
    if registry is not None:
        plugins = {name: info.version for name, info in sorted(registry.plugins.items())}
    return Versions(txdsl=__version__, torch=torch.__version__,
                    python=platform.python_version(), plugins=plugins)


def write_artifact(destination: str | os.PathLike, *, module: "nn.Module", lowered: Any,
                   backend: "Backend", options: BaseModel, ir: "ModelIR", plan: Any,
                   dtype: str, device: str, seed: int, inputs: dict[str, dict[str, Any]],
                   spec_text: str | None = None, spec_path: str | None = None,
                   weights_source: str | os.PathLike | None = None,
                   registry: "Registry | None" = None) -> Path:
    """Write an artifact directory atomically; returns its path."""
    dest = check_destination(destination)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        umask = _umask()
        stored = save_weights(module, tmp / WEIGHTS)
        if spec_text is not None:
            (tmp / SPEC).write_text(spec_text, encoding="utf-8")
        else:
            (tmp / SPEC).write_text(json.dumps(ir.model_dump(mode="json"), indent=2) + "\n",
                                    encoding="utf-8")
        if hasattr(backend, "save"):
            backend.save(lowered, tmp)
        files = {p.relative_to(tmp).as_posix(): sha256_file(p)
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        for p in [tmp, *tmp.rglob("*")]:  # mkdtemp and some writers make owner-only files
            p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)
        manifest = Manifest(
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            model=ir.name, ir=ir.model_dump(mode="json"), ir_hash=ir.hash(),
            plan=plan.model_dump(mode="json") if plan is not None else None,
            backend=backend.name, backend_options=options.model_dump(mode="json"),
            self_contained=bool(getattr(backend, "self_contained", False)),
            dtype=dtype, device=device, seed=seed, inputs=inputs,
            weights=WeightsInfo(
                sha256=files[WEIGHTS], tensors=stored,
                parameters=sum(p.numel() for p in module.parameters()),
                source=str(weights_source) if weights_source is not None else None,
                source_sha256=sha256_file(weights_source) if weights_source is not None else None),
            spec=SpecInfo(format="tx" if spec_text is not None else "ir-json", source=spec_path),
            versions=_versions(registry), files=files)
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an existing ``dest`` goes only once ``tmp`` is there."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.rename(dest, old / dest.name)  # same filesystem: atomic
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old / dest.name, dest)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- reading


def read_manifest(directory: str | os.PathLike) -> Manifest:
    """Parse ``manifest.json`` (no file checks; see :func:`check_integrity`)."""
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise ArtifactError(f"{directory}: no such artifact directory")
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (not a txdsl artifact?)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a txdsl artifact manifest (format is not '{FORMAT}')")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {version!r} is newer than this txdsl "
                            f"reads ({FORMAT_VERSION}); upgrade txdsl")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(f"{path}: invalid manifest: {where}: {first['msg']}") from None


def check_integrity(directory: str | os.PathLike) -> Manifest:
    """Read the manifest and check every file it lists, and the IR, against their hashes."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for required in (manifest.weights.file, manifest.spec.file):
        if required not in manifest.files:
            raise ArtifactError(f"{directory / MANIFEST}: lists no hash for {required}")
    for rel, digest in manifest.files.items():
        path = directory / rel
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (listed in {MANIFEST})")
        if sha256_file(path) != digest:
            raise ArtifactError(f"{path}: sha256 mismatch (the file was changed after the "
                                f"build; {MANIFEST} expects {digest[:16]}...)")
    if manifest.weights.sha256 != manifest.files[manifest.weights.file]:
        raise ArtifactError(f"{directory / MANIFEST}: weights sha256 disagrees with its file list")
    if ir_json_hash(manifest.ir) != manifest.ir_hash:
        raise ArtifactError(f"{directory / MANIFEST}: IR hash mismatch (the IR in the manifest "
                            f"was changed after the build)")
    return manifest
