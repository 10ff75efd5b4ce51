"""Every file a recipe depends on: the subjects its signature lists beside the manifest.

A recipe's run depends on more bytes than the manifest's: the lock it names, its checkpoints
and ONNX baseline (with the ONNX file's external data), and the local modules its factories and
loaders come from (a module beside the manifest rather than installed: its file, and its
packages' `__init__.py`). `referenced` names them, relative to the manifest's folder, in a
stable order; `digests` reads each once. The signature (`compressgate.recipes.signing`) lists
each by sha256 and `verify` refuses a changed, missing or unlisted one; a local module is then
imported from exactly the signed bytes (`compressgate.recipes.models.SignedModules`).

Nothing here runs user code: modules are located by file name, an installed module by
`importlib.util.find_spec` of its top-level name (`trust.installed_spec`), which imports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from compressgate.recipes.manifest import FileRef, ImportRef, Recipe, iter_refs
from compressgate.recipes.trust import installed_spec
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.errors import ManifestError


@dataclass(frozen=True)
class LocalModule:
    """A module beside the manifest: `files` are its package `__init__.py`s then its own file,
    relative to the manifest's folder; `package` says whether the module is itself a package."""

    name: str
    files: tuple[str, ...]
    package: bool

    @property
    def source(self) -> str:
        return self.files[-1]


def installed(module: str) -> bool:
    """Whether the top-level package of `module` is importable without the recipe's folder."""
    return installed_spec(module.partition(".")[0]) is not None


def local_module(module: str, base: Path) -> LocalModule | None:
    """`module` as a module beside the manifest in `base` (None: not there). Only Python source
    counts: a compiled extension or a namespace folder beside a recipe is never a subject."""
    parts = module.split(".")
    files: list[str] = []
    for depth, part in enumerate(parts):
        folder = PurePosixPath(*parts[:depth]) if depth else PurePosixPath()
        last = depth == len(parts) - 1
        package = folder / part / "__init__.py"
        plain = folder / f"{part}.py"
        if (base / package).is_file():
            files.append(str(package))
            if last:
                return LocalModule(module, tuple(files), package=True)
        elif last and (base / plain).is_file():
            files.append(str(plain))
            return LocalModule(module, tuple(files), package=False)
        else:
            return None
    return None


def local_modules(recipe: Recipe, base: Path) -> dict[str, LocalModule]:
    """The recipe's factories' and loaders' modules that live beside it, by module name."""
    found: dict[str, LocalModule] = {}
    for _, ref in iter_refs(recipe):
        if isinstance(ref, ImportRef):
            name = ref.partition(":")[0]
            if name in found or installed(name):
                continue
            module = local_module(name, base)
            if module is not None:
                found[name] = module
    return found


def referenced(recipe: Recipe, base: Path, *, external: bool = True) -> list[str]:
    """Every file the recipe depends on besides itself, relative to `base` (its folder), each
    once, in the order the manifest names them: file references, an ONNX file's external data
    (read from the ONNX file: left out with `external=False`), then local modules' files."""
    names: dict[str, None] = {}
    root = base.resolve()
    for loc, ref in iter_refs(recipe):
        if isinstance(ref, FileRef):
            name = PurePosixPath(Path(ref).as_posix())
            try:
                inside = (base / name).resolve().is_relative_to(root)
            except (OSError, RuntimeError):  # a symbolic link loop: validation names it
                inside = False
            if not inside:
                continue  # outside the folder: validation refuses it, nothing reads it
            names[str(name)] = None
            if external and loc[-1] == "onnx" and (base / name).is_file():
                names.update(dict.fromkeys(onnx_external_files(base / name, base)))
    for module in local_modules(recipe, base).values():
        names.update(dict.fromkeys(module.files))
    return list(names)


def digests(names: list[str], base: Path) -> dict[str, str | None]:
    """Each name's sha256 as the file is now (None: missing or not a regular file)."""
    out: dict[str, str | None] = {}
    for name in names:
        path = base / name
        out[name] = sha256_file(path) if path.is_file() else None
    return out


def onnx_external_files(path: Path, base: Path) -> list[str]:
    """The external-data files an ONNX model names, relative to `base`; a location outside
    `base` (absolute, or climbing out of it) is bad input, never followed."""
    import onnx
    from onnx import external_data_helper

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a malformed file
        raise ManifestError(
            f"{path}: not a readable ONNX model ({type(exc).__name__})",
            hint="export the model again, or point model.onnx at the right file",
        ) from None
    root = base.resolve()
    found: dict[str, None] = {}
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = external_data_helper.ExternalDataInfo(tensor).location
        target = (path.parent / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(root):
            raise ManifestError(
                f"{path}: tensor {tensor.name!r} keeps its data at {location!r}, outside the "
                f"recipe's folder ({root})",
                hint="save the model with its external data beside it (a relative location)",
            )
        found[target.relative_to(root).as_posix()] = None
    return list(found)
