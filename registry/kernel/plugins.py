"""One explicit registry per plug-in family, and the third-party plug-ins installed beside us.

Built-in stages and evaluators are registered by decorator; a duplicate raises, and a miss lists
the known names. No package walking and no metaclass magic: what is registered is what an import
put there.

Third-party stages and evaluators come through entry points (`compressgate.stages`,
`compressgate.evaluators`). Finding them reads distribution metadata only: `installed_plugins`
never imports a plug-in. Whether one may run is the trust policy's decision
(`compressgate.recipes.plugins`); only then is `InstalledPlugin.load` called, which imports the
entry point's module after checking that the module is the distribution's own file.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from packaging.utils import canonicalize_name

from compressgate.registry.kernel.digests import canonical_json, sha256_bytes, sha256_file
from compressgate.registry.kernel.errors import ManifestError

T = TypeVar("T")

Family = Literal["stage", "evaluator"]
GROUPS: dict[Family, str] = {
    "stage": "compressgate.stages",
    "evaluator": "compressgate.evaluators",
}
# What a recipe may name after `plugin:`; an entry point named otherwise is listed, never used.
PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


class Registry(Generic[T]):
    """A name → plug-in table for one family (`family` is used in messages)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.family} kind {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ManifestError(
                f"unknown {self.family} kind {name!r}; known: {', '.join(self.kinds())}"
            ) from None

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))


# --- entry points -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledPlugin:
    """One entry point of a plug-in group, as the distribution's metadata declares it."""

    family: Family
    name: str
    target: str  # `module:Class`, as declared
    distribution: str  # as the distribution names itself
    version: str
    location: str | None  # the folder the distribution is installed in
    _dist: importlib.metadata.Distribution = field(repr=False, compare=False)

    @property
    def group(self) -> str:
        return GROUPS[self.family]

    @property
    def canonical(self) -> str:
        """The distribution's normalised name (PEP 503), what a trust policy names."""
        return canonicalize_name(self.distribution)

    @property
    def module(self) -> str:
        return self.target.partition(":")[0].strip()

    def describe(self) -> str:
        return f"{self.name} ({self.distribution} {self.version})"

    def code_sha256(self) -> str | None:
        """`code_sha256` of this entry point's distribution."""
        return code_sha256(self._dist)

    def load(self) -> Any:
        """Import the entry point's module and return its object. Call only for a plug-in the
        trust in force allows: the module is imported here. The module must be a file of this
        distribution (not one of the same name found first on the path, nor another package's):
        what the policy allowed is what runs."""
        if not _TARGET.match(self.target):
            raise ManifestError(
                f"plug-in {self.describe()}: its entry point target {self.target!r} is not "
                "`package.module:Class`",
                hint="the plug-in's packaging is broken: report it to its authors",
            )
        own = _own_files(self._dist)
        top = self.module.partition(".")[0]
        spec = importlib.util.find_spec(top)
        origin = getattr(spec, "origin", None)
        if origin is None or Path(origin).resolve() not in own:
            raise ManifestError(
                f"plug-in {self.describe()}: its entry point names the module {self.module}, "
                f"which is not a file of {self.distribution} (it would be imported from "
                f"{origin or 'nowhere'}); refused",
                hint="a plug-in runs only its own code: reinstall it, and remove any module "
                f"named {top} that comes first on the path",
            )
        module = importlib.import_module(self.module)
        where = getattr(module, "__file__", None)
        if where is None or Path(where).resolve() not in own:
            raise ManifestError(
                f"plug-in {self.describe()}: module {self.module} was loaded from "
                f"{where or 'nowhere'}, not from {self.distribution}'s files; refused"
            )
        attr = self.target.partition(":")[2].strip()
        if not hasattr(module, attr):
            raise ManifestError(
                f"plug-in {self.describe()}: module {self.module} has no attribute {attr!r}",
                hint="the plug-in's packaging is broken: report it to its authors",
            )
        return getattr(module, attr)


def installed_plugins(family: Family | None = None) -> list[InstalledPlugin]:
    """Every entry point of the plug-in groups (one family's, given one), sorted by family and
    name; distribution metadata only, nothing is imported. A distribution installed twice on
    the path counts once: the copy found first, as `importlib.metadata` resolves it."""
    found: list[InstalledPlugin] = []
    for each, group in GROUPS.items():
        if family is not None and each != family:
            continue
        for entry in importlib.metadata.entry_points(group=group):
            dist = entry.dist
            if dist is None:  # not from a distribution's metadata: nothing to judge it by
                continue
            try:
                location: str | None = str(dist.locate_file(""))
            except NotImplementedError:  # a distribution that is not on the file system
                location = None
            found.append(
                InstalledPlugin(
                    family=each,
                    name=entry.name,
                    target=entry.value,
                    distribution=dist.metadata["Name"] or "unknown",
                    version=dist.version,
                    location=location,
                    _dist=dist,
                )
            )
    order = list(GROUPS)
    return sorted(found, key=lambda p: (order.index(p.family), p.name, p.canonical))


def _listed(dist: importlib.metadata.Distribution) -> list[importlib.metadata.PackagePath]:
    """The distribution's files (RECORD) that are its code: not byte code, nothing outside its
    install folder (scripts), and of its metadata only the entry points (what names the code)."""
    kept = []
    for path in dist.files or ():
        parts = path.parts
        if not parts or path.is_absolute() or ".." in parts or "__pycache__" in parts:
            continue
        if path.suffix == ".pyc":
            continue
        if parts[0].endswith((".dist-info", ".egg-info")) and path.name != "entry_points.txt":
            continue
        kept.append(path)
    return kept


def _own_files(dist: importlib.metadata.Distribution) -> set[Path]:
    return {Path(str(path.locate())).resolve() for path in _listed(dist)}


def code_sha256(dist: importlib.metadata.Distribution) -> str | None:
    """sha256 over the distribution's code as installed: each file its RECORD lists (not byte
    code, not its other metadata) with the sha256 of the bytes on disk now, and its entry points.
    None when the distribution lists no files (installed without a RECORD). An editable install
    lists only the link to its source folder, so its digest does not cover the source."""
    if dist.files is None:
        return None
    files: dict[str, str] = {}
    for path in _listed(dist):
        located = Path(str(path.locate()))
        files[path.as_posix()] = sha256_file(located) if located.is_file() else "missing"
    return sha256_bytes(canonical_json(files))
