"""Load a recipe manifest from disk with every check that needs its surroundings.

On top of the model's own checks: cross-field rules (unique stage names, gates after existing
stages), file references that must exist inside the manifest's folder, factories and loaders
whose modules the trust file allow-lists (`compressgate.recipes.examples` without one) and that
must be
importable (found without running them), plug-ins (`plugin:`) whose distributions the trust
file allow-lists (none without one; `compressgate.recipes.plugins`, nothing imported), and,
given a trust file, owners that it must know.
All problems are reported together, each with its line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path

from compressgate.recipes.manifest import FileRef, ImportRef, Loc, Recipe, iter_refs, recipe_issues
from compressgate.recipes.plugins import plugin_issues
from compressgate.recipes.trust import (
    DEFAULT_MODULES,
    Trust,
    deserialiser,
    installed_spec,
    module_allowed,
    shadowed_by,
)
from compressgate.recipes.yamldoc import YamlDocument, parse_yaml, validate
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.kernel.errors import Issue, ManifestError, NotFoundError


@dataclass(frozen=True)
class LoadedRecipe:
    """A validated recipe and the exact bytes it was read from."""

    path: Path
    recipe: Recipe
    data: bytes

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


def read_manifest(path: Path, *, what: str = "recipe") -> bytes:
    """A manifest's bytes (`what`: recipe or sweep, for the messages)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path} is a directory; name a {what} YAML file") from None
    except OSError as exc:  # a symbolic link loop, no permission to read, …
        raise ManifestError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def load_recipe(
    path: Path,
    *,
    trust: Trust | None = None,
    data: bytes | None = None,
    parsed: tuple[Recipe, YamlDocument] | None = None,
) -> LoadedRecipe:
    """Read, validate and check a manifest; raises ManifestError listing every problem.

    `data`, when given, are the manifest's bytes already read (by the signature check), so that
    what is validated is exactly what was verified and the file is read once; `parsed`, those
    bytes already parsed (`parse_recipe`), so that they are parsed once."""
    if data is None:
        data = read_manifest(path)
    recipe, document = parsed if parsed is not None else parse_recipe(data, str(path))
    problems = list(recipe_issues(recipe))
    problems += _reference_issues(recipe, path.parent, trust.modules if trust else DEFAULT_MODULES)
    if trust is not None:
        problems += _owner_issues(recipe, trust)
    problems += plugin_issues(recipe, trust)  # metadata only: no plug-in is imported here
    if problems:
        issues = [
            Issue(document.source, *document.locate(loc), message) for loc, message in problems
        ]
        issues.sort(key=lambda issue: issue.line or 0)
        raise ManifestError(issues=tuple(issues))
    return LoadedRecipe(path, recipe, data)


def parse_recipe(data: bytes, source: str) -> tuple[Recipe, YamlDocument]:
    """Parse and validate manifest bytes, with no checks on files, imports or owners."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            issues=(Issue(source, None, "", f"not UTF-8 text (byte {exc.start})"),)
        ) from None
    document = parse_yaml(text, source)
    return validate(Recipe, document), document


def _reference_issues(
    recipe: Recipe, base: Path, allowed: tuple[str, ...]
) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    root = base.resolve()
    for loc, ref in iter_refs(recipe):
        if isinstance(ref, FileRef):
            try:
                target = (base / ref).resolve()
            except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
                problems.append((loc, f"'{ref}' cannot be resolved: a symbolic link loop"))
                continue
            if not target.is_relative_to(root):
                problems.append((loc, f"'{ref}' resolves outside the manifest's folder ({root})"))
            elif not target.is_file():
                problems.append((loc, f"file '{ref}' not found next to the manifest ({root})"))
        elif isinstance(ref, ImportRef) and not module_allowed(ref.module, allowed):
            listed = ", ".join(allowed) or "none"
            problems.append(
                (
                    loc,
                    f"module '{ref.module}' is not allow-listed in the trust file (allowed: "
                    f"{listed}); an owner adds it with `compressgate trust allow {ref.module}`",
                )
            )
        elif isinstance(ref, ImportRef) and deserialiser(ref.module, ref.partition(":")[2]):
            problems.append(
                (
                    loc,
                    f"'{ref}' is a deserialising entry point (pickle and its kind run code from "
                    "the bytes they read): never a factory or a loader, allow-listed or not",
                )
            )
        elif isinstance(ref, ImportRef) and (shadow := shadowed_by(ref.module, root)):
            problems.append(
                (
                    loc,
                    f"module '{ref.module}': {shadow} beside the manifest has the name of an "
                    "installed module, which is the one imported; rename the local module",
                )
            )
        elif isinstance(ref, ImportRef) and _find_module(ref.module, root) is None:
            problems.append(
                (loc, f"module '{ref.module}' not found: install it or put it next to the manifest")
            )
    return problems


def _find_module(name: str, base: Path) -> ModuleSpec | None:
    """Locate a module without executing it or any of its parent packages."""
    top, *rest = name.split(".")
    try:
        spec = installed_spec(top) or PathFinder.find_spec(top, [str(base)])
    except (ImportError, ValueError):
        return None
    prefix = top
    for part in rest:
        if spec is None or spec.submodule_search_locations is None:
            return None
        prefix = f"{prefix}.{part}"
        spec = _find_submodule(prefix, list(spec.submodule_search_locations))
    return spec


def _find_submodule(name: str, path: list[str]) -> ModuleSpec | None:
    """Ask the import system's finders for `name` inside `path`, as `import` would, without
    importing its parent: an installed namespace (`compressgate.*`, mapped by an editable
    install's own finder) is found like a plain folder."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, path)
        except (ImportError, ValueError):
            continue
        if spec is not None:
            return spec  # type: ignore[no-any-return]
    return None


def _owner_issues(recipe: Recipe, trust: Trust) -> list[tuple[Loc, str]]:
    known = ", ".join(trust.owners)
    named: list[tuple[Loc, str]] = [
        (("metadata", "owners", index), owner) for index, owner in enumerate(recipe.metadata.owners)
    ]
    named += [(("gates", index, "owner"), gate.owner) for index, gate in enumerate(recipe.gates)]
    return [
        (loc, f"owner '{owner}' is not in the trust file (known: {known})")
        for loc, owner in named
        if owner not in trust.owners
    ]
