"""Artifact directories: what ``txdsl build -o DIR`` writes and :func:`load` reads.

An artifact is a directory::

    manifest.json        what was built, how, from what, a sha256 of every file,
                         and the sha256 of the manifest itself
    weights.safetensors  the weights (tied weights stored once, restored tied)
    spec.tx              the spec source (or, built from an IR, the IR as JSON)
    model.pt2 ...        whatever the backend saves (aot: an AOTInductor package)

It is written atomically (:mod:`txdsl.back.replace`): everything goes into a
temporary directory beside the destination, the manifest last, and the
directory is swapped into place only when complete. A failed or interrupted
build leaves the previous artifact (or nothing), never a half.

Reading never unpickles: the manifest is JSON, weights are safetensors.
:func:`check_integrity` refuses, with :class:`ArtifactError` naming the file:
a symlink anywhere in the directory, a file it does not list, a path that
is absolute or leaves the directory, a missing or altered file, and a
manifest whose own hash (``manifest_sha256``, over every other field) does
not match. The hash detects accidental and partial edits; it is not a
signature: anyone who can write the directory can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .backends import BuildError
from .replace import replacing
from .weights import WeightsError, load_weights, save_weights  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from torch import nn

    from .backends import Backend
    from ..ir import ModelIR
    from ..registry import Registry
    from ..sdk.targets import Target

FORMAT = "txdsl-artifact"
FORMAT_VERSION = 2  # 2: manifest_sha256 over the whole manifest; paths confined
MAX_MANIFEST_BYTES = 64 << 20
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
SPEC = "spec.tx"


class ArtifactError(BuildError):
    """An artifact directory can't be written or read: missing or altered files, bad manifest."""


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


class QuantizationInfo(_Strict):
    """What ``--quantize`` did (:mod:`txdsl.back.quantize`) and its measured accuracy cost."""

    scheme: str  # int8-weight or int4-weight
    kernel: str  # the PyTorch op the quantized matmuls run
    modules: int  # linear layers (and LM heads) quantized
    skipped: list[str] = Field(default_factory=list)  # left in float, with the reason
    weights_quantized: int  # weight elements stored as integers
    weights_float: int  # parameters left in the build's dtype
    max_logit_diff: float  # max |output - float32 output| on the fixed input
    max_abs_logit: float  # max |float32 output| there
    top1_agreement: float | None  # positions whose argmax agrees with float32 (logits only)
    measured_on: dict[str, list[int]]  # the fixed input's shapes


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
    quantization: QuantizationInfo | None = None  # --quantize: what and at what cost
    manifest_sha256: str = ""  # of the canonical JSON of every other field


def manifest_bytes(raw: dict[str, Any]) -> bytes:
    """The one form a manifest is written in (and must still be in when read)."""
    return (json.dumps(raw, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def manifest_hash(raw: dict[str, Any]) -> str:
    """The sha256 of a manifest's canonical JSON, leaving out ``manifest_sha256`` itself."""
    body = {k: v for k, v in raw.items() if k != "manifest_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


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


# ---------------------------------------------------------------- writing


def check_destination(destination: str | os.PathLike) -> Path:
    """Refuse, before any work is done, an output that can't be or must not be replaced:
    something that isn't an artifact, a path under a file, a directory we can't write."""
    dest = Path(destination).absolute()
    try:
        info = dest.lstat()
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        info = None  # a parent is a file: found below
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise ArtifactError(f"{dest}: is a symbolic link; give the directory it points to")
        if not stat.S_ISDIR(info.st_mode):
            raise ArtifactError(f"{dest}: exists and is not a directory")
        if any(dest.iterdir()) and not (dest / MANIFEST).is_file():
            raise ArtifactError(f"{dest}: refusing to replace a non-empty directory that is "
                                f"not a txdsl artifact (no {MANIFEST})")
    parent = dest.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ArtifactError(f"{dest}: cannot create the artifact: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArtifactError(f"{dest}: cannot create the artifact: {parent} is not writable "
                            "(permission denied)")
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
                   registry: "Registry | None" = None,
                   quantization: QuantizationInfo | None = None) -> Path:
    """Write an artifact directory atomically; returns its path.

    A problem of the environment (a full disk, a file-size limit, a directory
    that can't be written) is an :class:`ArtifactError` naming the path.
    """
    dest = check_destination(destination)
    try:
        with replacing(dest) as tmp:
            manifest = _write_files(tmp, module=module, lowered=lowered, backend=backend,
                                    options=options, ir=ir, plan=plan, dtype=dtype,
                                    device=device, seed=seed, inputs=inputs,
                                    spec_text=spec_text, spec_path=spec_path,
                                    weights_source=weights_source, registry=registry)
            if quantization is not None:
                manifest = manifest.model_copy(update={"quantization": quantization})
            raw = json.loads(manifest.model_dump_json())
            if raw.get("quantization") is None:
                raw.pop("quantization", None)  # manifests without it stay as they were
            raw["manifest_sha256"] = manifest_hash(raw)
            (tmp / MANIFEST).write_bytes(manifest_bytes(raw))
    except OSError as exc:
        name = f" ({Path(exc.filename).name})" if exc.filename else ""
        raise ArtifactError(f"{dest}: cannot write the artifact{name}: "
                            f"{exc.strerror or exc}") from None
    return dest


def _write_files(tmp: Path, *, module: "nn.Module", lowered: Any, backend: "Backend",
                 options: BaseModel, ir: "ModelIR", plan: Any, dtype: str, device: str,
                 seed: int, inputs: dict[str, dict[str, Any]], spec_text: str | None,
                 spec_path: str | None, weights_source: str | os.PathLike | None,
                 registry: "Registry | None") -> Manifest:
    """Everything but the manifest into ``tmp``; the manifest describing it."""
    umask = _umask()
    try:
        stored = save_weights(module, tmp / WEIGHTS)
    except OSError:
        raise
    except Exception as exc:  # safetensors reports a failed write as its own error type
        raise OSError(getattr(exc, "errno", None) or 0, f"{type(exc).__name__}: {exc}",
                      str(tmp / WEIGHTS)) from exc
    if spec_text is not None:
        (tmp / SPEC).write_text(spec_text, encoding="utf-8")
    else:
        (tmp / SPEC).write_text(json.dumps(ir.model_dump(mode="json"), indent=2) + "\n",
                                encoding="utf-8")
    if hasattr(backend, "save"):
        backend.save(lowered, tmp)
    files = {p.relative_to(tmp).as_posix(): sha256_file(p)
             for p in sorted(tmp.rglob("*")) if p.is_file() and not p.is_symlink()}
    for p in [tmp, *tmp.rglob("*")]:  # mkdtemp and some writers make owner-only files
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)
    return Manifest(
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


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


# ---------------------------------------------------------------- reading


def read_manifest(directory: str | os.PathLike) -> Manifest:
    """Parse ``manifest.json`` (no file checks; see :func:`check_integrity`)."""
    return _read(Path(directory))[0]


def _read(directory: Path) -> tuple[Manifest, dict[str, Any]]:
    """The manifest, and what it was parsed from (``bytes`` and ``json``)."""
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no such artifact directory")
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (not a txdsl artifact?)") from None
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactError(f"{path}: not a regular file (a symlink or a directory; an "
                            "artifact holds only its own files)")
    if info.st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path}: too large ({info.st_size} bytes) for a manifest")
    try:
        data = path.read_bytes()
        raw = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a txdsl artifact manifest (format is not '{FORMAT}')")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {version!r} is newer than this txdsl "
                            f"reads ({FORMAT_VERSION}); upgrade txdsl")
    if version < FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {version} was written by an older txdsl "
                            f"and has no manifest hash; rebuild it (this txdsl reads version "
                            f"{FORMAT_VERSION})")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(f"{path}: invalid manifest: {where}: {first['msg']}") from None
    return manifest, {"bytes": data, "json": raw}


def _confined(directory: Path, rel: str, what: str) -> Path:
    """``directory / rel``, refused unless ``rel`` is a plain relative path inside it."""
    parts = rel.split("/")
    if (not rel or rel.startswith("/") or "\\" in rel or "\0" in rel
            or any(p in ("", ".", "..") for p in parts)):
        raise ArtifactError(f"{directory / MANIFEST}: {what} {rel!r} is not a plain path "
                            "inside the artifact (absolute, '..', or empty parts)")
    path = directory.joinpath(*parts)
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        raise ArtifactError(f"{directory / MANIFEST}: {what} {rel!r} resolves outside the "
                            "artifact") from None
    return path


def _own_files(directory: Path) -> set[str]:
    """Every file under ``directory`` (relative, '/'-separated); refuses symlinks and
    anything that is not a regular file or a directory."""
    found = set()
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ArtifactError(f"{path}: a symbolic link inside the artifact (refused: "
                                    "an artifact holds only its own files)")
            if stat.S_ISREG(mode):
                found.add(path.relative_to(directory).as_posix())
            elif not stat.S_ISDIR(mode):
                raise ArtifactError(f"{path}: not a regular file")
    return found


def check_integrity(directory: str | os.PathLike) -> Manifest:
    """Read the manifest and check the directory against it: every path it names stays
    inside, no symlinks, no unlisted files, every file's hash, the IR's hash, and the
    manifest's own hash (over every field)."""
    directory = Path(directory)
    manifest, raw = _read(directory)
    where = directory / MANIFEST
    present = _own_files(directory) - {MANIFEST}
    for rel in manifest.files:
        _confined(directory, rel, "file")
    _confined(directory, manifest.weights.file, "weights.file")
    _confined(directory, manifest.spec.file, "spec.file")
    for required in (manifest.weights.file, manifest.spec.file):
        if required not in manifest.files:
            raise ArtifactError(f"{where}: lists no hash for {required}")
    for rel, digest in manifest.files.items():
        path = directory / rel
        if rel not in present:
            raise ArtifactError(f"{path}: missing (listed in {MANIFEST})")
        if sha256_file(path) != digest:
            raise ArtifactError(f"{path}: sha256 mismatch (the file was changed after the "
                                f"build; {MANIFEST} expects {digest[:16]}...)")
    extra = sorted(present - set(manifest.files))
    if extra:
        raise ArtifactError(f"{directory / extra[0]}: not listed in {MANIFEST} (an artifact "
                            f"holds only the files its manifest hashes)")
    if manifest.weights.sha256 != manifest.files[manifest.weights.file]:
        raise ArtifactError(f"{where}: weights sha256 disagrees with its file list")
    if ir_json_hash(manifest.ir) != manifest.ir_hash:
        raise ArtifactError(f"{where}: IR hash mismatch (the IR in the manifest "
                            f"was changed after the build)")
    if manifest_hash(raw["json"]) != manifest.manifest_sha256:
        raise ArtifactError(f"{where}: manifest hash mismatch (a field of the manifest was "
                            "changed after the build)")
    if manifest_bytes(raw["json"]) != raw["bytes"]:
        raise ArtifactError(f"{where}: the manifest was edited after the build (it is not "
                            "in the form txdsl writes)")
    return manifest
