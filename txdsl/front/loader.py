"""Loading spec files and their imports into scopes of named models.

Each file sees the models it defines and those of the files it imports
(directly; an imported file's own imports stay its business). Imports are
relative to the importing file; a cycle is an error at the ``import`` that
closes it. Only ``.tx`` files are imported (a symlink must point to one as
well): an error never quotes the lines of a file that isn't a spec, such as
``import "/etc/passwd"``.

``import "zoo:NAME.tx"`` imports a bundled spec (the repository's ``specs/``,
shipped in the wheel as the package ``txdsl.zoo``) from any directory, so a
variant of a known family is ``model mine extends llama { layers = 4 }``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import syntax as s
from ..errors import ErrorSink, Source, SpecError
from .lower import lower
from .source import read_source

MAX_IMPORT_DEPTH = 64  # a chain of imports longer than this is a mistake (and would recurse)
ZOO_PREFIX = "zoo:"


def zoo_dir() -> Path:
    """The bundled specs: the installed ``txdsl.zoo``, else the source checkout's ``specs/``."""
    try:
        from importlib import resources

        path = resources.files("txdsl.zoo")
        if (path / "gpt2.tx").is_file():
            return Path(str(path))
    except (ImportError, TypeError, OSError):
        pass
    return Path(__file__).resolve().parents[2] / "specs"


def zoo_names() -> list[str]:
    """The bundled spec files (``import "zoo:<name>"``)."""
    return sorted(p.name for p in zoo_dir().glob("*.tx"))


@dataclass
class FileScope:
    """One loaded file: its syntax and the models visible from it."""

    spec: s.SpecFile
    path: str
    visible: dict[str, tuple[s.ModelDecl, "FileScope"]] = field(default_factory=dict)

    @property
    def local(self) -> list[s.ModelDecl]:
        return list(self.spec.models)


class Loader:
    """Loads files once each; detects import cycles."""

    def __init__(self) -> None:
        self._done: dict[Path, FileScope] = {}

    def load_source(self, source: Source, base_dir: Path, stack: tuple[Path, ...] = ()) -> FileScope:
        spec = lower(source)
        scope = FileScope(spec=spec, path=source.path)
        sink = ErrorSink()
        for imp in spec.imports:
            try:
                self._add_import(scope, imp, base_dir, stack)
            except SpecError as err:
                sink.add(err)
        for decl in spec.models:
            if decl.name in scope.visible:
                other, where = scope.visible[decl.name]
                sink.add(SpecError(f"model '{decl.name}' is defined twice", decl.name_span,
                                   f"the other definition is at {other.name_span or where.path}"))
                continue
            scope.visible[decl.name] = (decl, scope)
        sink.check()
        return scope

    def load_file(self, path: Path, stack: tuple[Path, ...] = ()) -> FileScope:
        key = path.resolve()
        if key in self._done:
            return self._done[key]
        scope = self.load_source(read_source(path), path.parent, stack + (key,))
        self._done[key] = scope
        return scope

    def _add_import(self, scope: FileScope, imp: s.Import, base_dir: Path,
                    stack: tuple[Path, ...]) -> None:
        if imp.path.startswith(ZOO_PREFIX):
            name = imp.path[len(ZOO_PREFIX):]
            target = zoo_dir() / name
            if "/" in name or "\\" in name or not target.is_file():
                from ..errors import did_you_mean

                raise SpecError(f"cannot import \"{imp.path}\": the zoo has no spec '{name}'",
                                imp.span, did_you_mean(name, zoo_names(), "bundled specs")
                                or f"bundled specs: {', '.join(zoo_names())}")
        else:
            target = (base_dir / imp.path)
        key = target.resolve()
        if key in stack:
            chain = " -> ".join(p.name for p in stack[stack.index(key):] + (key,))
            raise SpecError(f"import cycle: {chain}", imp.span,
                            "two spec files can't import each other; move the shared models "
                            "into a third file")
        if not target.exists():
            raise SpecError(f"cannot import \"{imp.path}\": no such file", imp.span,
                            f"imports are relative to the importing file; looked for {target}")
        if target.is_dir():
            raise SpecError(f"cannot import \"{imp.path}\": it is a directory", imp.span)
        if target.suffix != ".tx" or key.suffix != ".tx":  # never read (and quote) other files
            raise SpecError(f"cannot import \"{imp.path}\": not a .tx spec file", imp.span,
                            "imports name .tx files (a symlink must point to one too)")
        if len(stack) >= MAX_IMPORT_DEPTH:
            raise SpecError(f"imports nested more than {MAX_IMPORT_DEPTH} files deep", imp.span)
        imported = self.load_file(target, stack)
        for decl in imported.local:
            if decl.name in scope.visible:
                raise SpecError(f"import \"{imp.path}\" defines model '{decl.name}', "
                                f"which is already visible here", imp.span)
            scope.visible[decl.name] = (decl, imported)
