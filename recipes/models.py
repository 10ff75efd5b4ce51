"""Models between stages: building them from factories, saving and loading them, counting them.

A variant is either a torch model (`TorchModel`: a module and the factory that builds its
architecture) or an ONNX model (`OnnxModel`: a directory holding the model file and its
external data). Torch variants are stored as a plain state dict plus the factory reference,
loaded with `torch.load(weights_only=True)`: never a pickled module. A pruned model has smaller
tensors than its factory builds, so loading resizes each parameter to the stored shape first.

Factories and loaders are imported only from the modules the trust file allow-lists
(`allowed_modules`, set by whoever loaded the trust file; `compressgate.recipes.examples`
otherwise), and
the object named must be defined in such a module: `compressgate.recipes.examples.digits:os.system`
is
refused like `os:system`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressgate.recipes.trust import (
    DEFAULT_MODULES,
    deserialiser,
    module_allowed,
    shadowed_by,
)
from compressgate.registry.kernel.errors import IntegrityError, ManifestError, StageError

if TYPE_CHECKING:
    from compressgate.recipes.subjects import LocalModule

TORCH_FILE = "model.pt"
ONNX_FILE = "model.onnx"
ONNX_DATA_FILE = "model.onnx.data"
_FORMAT = "compressgate.torch/v1"


@dataclass
class TorchModel:
    """A torch variant: the module, and `factory(**args)` that builds its architecture.

    `swaps` names the submodules a stage replaced by one of compressgate's own modules
    (`SWAPPABLE`: path → kind), which loading puts back in the built architecture.
    """

    module: nn.Module
    factory: str
    args: dict[str, Any] = field(default_factory=dict)
    swaps: dict[str, str] = field(default_factory=dict)

    format = "torch"


@dataclass
class OnnxModel:
    """An ONNX variant: `directory/model.onnx`, with `model.onnx.data` if weights are external."""

    directory: Path

    format = "onnx"

    @property
    def path(self) -> Path:
        return self.directory / ONNX_FILE

    @property
    def files(self) -> tuple[str, ...]:
        data = self.directory / ONNX_DATA_FILE
        return (ONNX_FILE, ONNX_DATA_FILE) if data.exists() else (ONNX_FILE,)


Variant = TorchModel | OnnxModel

_ALLOWED: ContextVar[tuple[str, ...]] = ContextVar("allowed_modules", default=DEFAULT_MODULES)
_SIGNED: ContextVar[Mapping[str, SignedSource] | None] = ContextVar("signed_sources", default=None)


@contextmanager
def allowed_modules(
    modules: tuple[str, ...], signed: Mapping[str, SignedSource] | None = None
) -> Iterator[None]:
    """Within the block, `resolve` imports only from `modules` (a trust file's allow-list),
    and a module beside the recipe only from `signed` (a verified recipe's local modules,
    `VerifiedRecipe.sources`) when given."""
    token = _ALLOWED.set(tuple(modules))
    signed_token = _SIGNED.set(signed)
    try:
        yield
    finally:
        _SIGNED.reset(signed_token)
        _ALLOWED.reset(token)


def _refuse(ref: str, module: str, *, defined: bool = False) -> ManifestError:
    allowed = ", ".join(_ALLOWED.get()) or "none"
    what = f"the object is defined in {module}, which is" if defined else f"module {module} is"
    top = module.partition(".")[0]
    stdlib = top in sys.stdlib_module_names or top in sys.builtin_module_names
    return ManifestError(
        f"{ref}: {what} not allow-listed in the trust file (allowed: {allowed})",
        hint="standard-library code can never be named by a recipe"
        if stdlib
        else f"if {module} is trusted code, add it with `compressgate trust allow {module}`",
    )


def _deserialising(ref: str) -> ManifestError:
    return ManifestError(
        f"{ref}: a deserialising entry point (pickle and its kind run code from the bytes "
        "they read) is never a factory or a loader, allow-listed or not",
        hint="load weights with `model.checkpoint` (a state dict, read with weights_only) or "
        "`model.onnx`",
    )


@dataclass(frozen=True)
class SignedSource:
    """A module beside a recipe, importable only as these bytes: its file and their sha256
    (a subject of the recipe's signature)."""

    path: Path
    sha256: str
    package: bool


def local_sources(
    recipe: Any, base: Path, signed: Mapping[str, str] | None = None
) -> dict[str, SignedSource]:
    """The recipe's local modules (and their packages) by module name, each pinned to a
    sha256: the one its signature lists (`signed`, by file name relative to `base`), or, for a
    recipe that is not signed (`recipe validate --power`, tests), the file's as it is now."""
    from compressgate.recipes.subjects import local_modules

    sources: dict[str, SignedSource] = {}
    for module in local_modules(recipe, base).values():
        sources.update(_pinned(module, base, signed))
    return sources


def _pinned(
    module: LocalModule, base: Path, signed: Mapping[str, str] | None
) -> dict[str, SignedSource]:
    from compressgate.registry.kernel.digests import sha256_file

    parts = module.name.split(".")
    out: dict[str, SignedSource] = {}
    for depth, file in enumerate(module.files):
        name = ".".join(parts[: depth + 1])
        sha = signed.get(file) if signed is not None else sha256_file(base / file)
        if sha is None:
            raise IntegrityError(
                f"{base / file}: the module {name} is not among the files the recipe's "
                "signature lists",
                hint="re-sign the recipe so that its signature covers the module",
            )
        package = depth < len(module.files) - 1 or module.package
        out[name] = SignedSource(base / file, sha, package)
    return out


class _SignedLoader(importlib.abc.SourceLoader):
    """Imports a module from its file's bytes, only if they are the pinned ones: the import
    system compiles exactly the bytes `get_data` checked, and never a cached bytecode file
    (`path_stats` gives none, so `__pycache__` is neither read nor written)."""

    def __init__(self, name: str, source: SignedSource) -> None:
        self.name = name
        self.source = source
        self.signed_source = source  # how `trust.installed_spec` tells it from an installed one

    def get_filename(self, fullname: str) -> str:
        return str(self.source.path)

    def is_package(self, fullname: str) -> bool:
        return self.source.package

    def path_stats(self, path: str) -> Mapping[str, Any]:
        raise OSError("a signed module is compiled from its checked bytes, never from a cache")

    def get_data(self, path: str) -> bytes:
        from compressgate.registry.kernel.digests import sha256_bytes

        source = self.source.path
        if Path(path) != source:
            raise OSError(f"{path}: only {source} is read for the module {self.name}")
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise IntegrityError(
                f"{source}: the module {self.name} cannot be read ({exc.strerror or exc})"
            ) from None
        if sha256_bytes(data) != self.source.sha256:
            raise IntegrityError(
                f"{source} changed since the recipe was signed: the module {self.name} is not "
                "imported",
                hint="re-sign the recipe if the change is meant",
            )
        return data


class SignedModules(importlib.abc.MetaPathFinder):
    """A finder for exactly the recipe's local modules, each from its pinned bytes: the
    recipe's folder is never on `sys.path`, so nothing else beside it is importable, and it
    comes after every installed package's finder."""

    def __init__(self, sources: Mapping[str, SignedSource]) -> None:
        self.sources = dict(sources)

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname,
            source.path,
            loader=_SignedLoader(fullname, source),
            submodule_search_locations=[] if source.package else None,
        )


def _forget_stale(sources: Mapping[str, SignedSource]) -> None:
    """Drop from `sys.modules` any of these names imported from other bytes (another recipe's
    module of the same name), with its submodules, so that the pinned bytes are imported."""
    for name, source in sources.items():
        module = sys.modules.get(name)
        if module is None:
            continue
        loader = getattr(getattr(module, "__spec__", None), "loader", None)
        if isinstance(loader, _SignedLoader) and loader.source == source:
            continue
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


@contextmanager
def importable_signed(sources: Mapping[str, SignedSource]) -> Iterator[None]:
    """Within the block, `import` finds the given local modules (last, after every installed
    package) and nothing else beside the recipe."""
    if not sources:
        yield
        return
    _forget_stale(sources)
    finder = SignedModules(sources)
    sys.meta_path.append(finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def resolve(ref: str, base: Path | None = None) -> Callable[..., Any]:
    """Import `module:function` from an allow-listed module; a module not allow-listed, an
    object defined elsewhere, a missing module or attribute are bad input (exit 2)."""
    module_name, _, attr = ref.partition(":")
    allowed = _ALLOWED.get()
    if not module_allowed(module_name, allowed):
        raise _refuse(ref, module_name)
    if any(part.startswith("_") for part in attr.split(".")):
        raise ManifestError(f"{ref}: a factory or loader cannot be a private name ('_…')")
    if deserialiser(module_name, attr):
        raise _deserialising(ref)
    shadow = shadowed_by(module_name, base)
    if shadow is not None:
        raise ManifestError(
            f"{ref}: {shadow} beside the recipe has the name of an installed module, which is "
            "the one imported: the file beside the recipe never runs",
            hint="rename the local module (and the recipe's reference to it)",
        )
    with importable_signed(_sources_for(module_name, base)):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ManifestError(f"cannot import {module_name} for {ref}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ManifestError(
                f"{ref}: module {module_name} has no attribute {attr!r}",
                hint="check the spelling of the function after the ':'",
            )
        target = getattr(target, part)
    defined_in = getattr(target, "__module__", None)
    if not isinstance(defined_in, str) or not module_allowed(defined_in, allowed):
        raise _refuse(ref, defined_in or "an unknown module", defined=True)
    if deserialiser(defined_in, str(getattr(target, "__name__", attr))):
        raise _deserialising(ref)
    if not callable(target):
        raise ManifestError(f"{ref} is not callable")
    return target  # type: ignore[no-any-return]


def _sources_for(module: str, base: Path | None) -> Mapping[str, SignedSource]:
    """The local modules `module` may come from: none when it is installed; else the verified
    recipe's (`allowed_modules(..., signed=)`), or, outside a verified run, `module` beside
    `base` pinned to its bytes as they are now."""
    from compressgate.recipes.subjects import installed, local_module

    if installed(module) or base is None:
        return {}
    signed = _SIGNED.get()
    if signed is not None:
        if module not in signed:
            raise ManifestError(
                f"module {module} is not installed and not a local module the recipe's "
                "signature lists",
                hint="install the module, or put it beside the recipe and sign the recipe again",
            )
        return signed
    found = local_module(module, base)
    return {} if found is None else _pinned(found, base, None)


def build(
    factory: str,
    args: dict[str, Any],
    *,
    what: str,
    base: Path | None = None,
    checkpoint: Path | None = None,
) -> TorchModel:
    """Call a model factory (and load its checkpoint); failures name `what` and the cause."""
    function = resolve(factory, base)
    try:
        module = function(**args)
    except Exception as exc:
        raise StageError(
            f"{what}: the factory {factory} raised {type(exc).__name__}: {exc}",
            hint="fix the factory or its args in the recipe",
        ) from exc
    if not isinstance(module, nn.Module):
        raise StageError(
            f"{what}: the factory {factory} returned {type(module).__name__}, not a torch.nn.Module"
        )
    if checkpoint is not None:
        state = read_checkpoint(checkpoint, what=what)
        load_weights(module, state, what=f"{what} checkpoint {checkpoint}")
    module.eval()
    return TorchModel(module, factory, dict(args))


def read_checkpoint(checkpoint: Path, *, what: str) -> Any:
    """A checkpoint's tensors, read with `torch.load(weights_only=True)`: a pickle that would
    run code is refused, never executed."""
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StageError(
            f"{what}: cannot load the checkpoint {checkpoint} with weights_only=True: "
            f"{_first_line(exc)}",
            hint="save weights with torch.save(model.state_dict(), path)",
        ) from exc


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (torch's run to a page)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def save_torch(model: TorchModel, directory: Path) -> tuple[str, ...]:
    """Write the variant as `directory/model.pt`; same weights, same bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.module.state_dict().items()}
    payload = {
        "format": _FORMAT,
        "factory": str(model.factory),
        "args": json.dumps(model.args, sort_keys=True),
        "state_dict": state,
    }
    if model.swaps:  # only then: every other variant keeps its bytes
        payload["swaps"] = json.dumps(model.swaps, sort_keys=True)
    torch.save(payload, directory / TORCH_FILE)
    return (TORCH_FILE,)


def load_torch(source: Path | bytes, base: Path | None = None) -> TorchModel:
    """Rebuild a stored torch variant from its factory, then load (and reshape to) its weights."""
    what = f"variant {source}" if isinstance(source, Path) else "stored variant"
    stream = source if isinstance(source, Path) else io.BytesIO(source)
    try:
        payload = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise IntegrityError(
            f"{what} cannot be loaded with weights_only=True: {_first_line(exc)}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ManifestError(f"{what} is not a compressgate torch variant")
    args = json.loads(payload["args"])
    model = build(payload["factory"], args, what=what, base=base)
    swaps = json.loads(payload.get("swaps", "{}"))
    if not isinstance(swaps, dict):
        raise ManifestError(f"{what}: its module swaps are not a mapping")
    for path, kind in swaps.items():
        swap(model.module, str(path), str(kind), what=what)
    model.swaps = {str(k): str(v) for k, v in swaps.items()}
    load_weights(model.module, payload["state_dict"], what=what)
    model.module.eval()
    return model


class RemappedEmbedding(nn.Module):
    """An embedding table that keeps some rows of a larger one (vocabulary trimming).

    `remap[token]` is the row of `token` in `weight`; tokens whose row was dropped read the row
    of the unknown token. The inputs keep the original token ids, so the tokenizer is unchanged;
    the ONNX graph gathers twice (the int32 map, then the rows).
    """

    def __init__(self, remap: torch.Tensor, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("remap", remap.to(torch.int32))
        self.weight = nn.Parameter(weight)
        self.num_embeddings, self.embedding_dim = weight.shape

    @classmethod
    def trim(cls, table: nn.Embedding, keep: torch.Tensor, unknown: int) -> RemappedEmbedding:
        """Keep the rows `keep` (sorted token ids, `unknown` among them) of `table`."""
        rows = torch.full((table.num_embeddings,), -1, dtype=torch.int64)
        rows[keep] = torch.arange(len(keep))
        rows[rows < 0] = int(rows[unknown])
        return cls(rows, table.weight.detach()[keep].clone())

    @classmethod
    def like(cls, table: nn.Module) -> RemappedEmbedding:
        """A placeholder in `table`'s place, resized by the stored weights when they load."""
        weight = table.weight
        assert isinstance(weight, torch.Tensor)
        remap = torch.zeros(weight.shape[0], dtype=torch.int32)
        return cls(remap, torch.empty_like(weight.detach()))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        remap = self.remap
        assert isinstance(remap, torch.Tensor)
        return nn.functional.embedding(remap[ids], self.weight)

    def extra_repr(self) -> str:
        remap = self.remap
        assert isinstance(remap, torch.Tensor)
        return f"{self.num_embeddings} of {remap.shape[0]} rows, {self.embedding_dim}"


# The modules a stored variant may ask to have swapped in: a fixed list of our own, never a
# name from the file imported.
SWAPPABLE: dict[str, Callable[[nn.Module], nn.Module]] = {
    "remapped-embedding": RemappedEmbedding.like,
}


def swap(module: nn.Module, path: str, kind: str, *, what: str) -> None:
    """Replace `module`'s submodule `path` by a placeholder of `kind` (see `SWAPPABLE`)."""
    if kind not in SWAPPABLE:
        raise ManifestError(f"{what}: unknown module swap {kind!r} at {path!r}")
    parent_name, _, leaf = path.rpartition(".")
    try:
        parent = module.get_submodule(parent_name)
        current = parent.get_submodule(leaf)
    except AttributeError as exc:
        raise StageError(
            f"{what}: the architecture has no module {path!r} to swap ({kind})"
        ) from exc
    setattr(parent, leaf, SWAPPABLE[kind](current))


# Attributes that describe a layer's width; kept in step with the tensors they describe.
_WIDTH_ATTRS: dict[type[nn.Module], tuple[tuple[str, str, int], ...]] = {
    nn.Linear: (("in_features", "weight", 1), ("out_features", "weight", 0)),
    nn.Conv1d: (("in_channels", "weight", 1), ("out_channels", "weight", 0)),
    nn.Conv2d: (("in_channels", "weight", 1), ("out_channels", "weight", 0)),
    nn.Conv3d: (("in_channels", "weight", 1), ("out_channels", "weight", 0)),
    nn.BatchNorm1d: (("num_features", "weight", 0),),
    nn.BatchNorm2d: (("num_features", "weight", 0),),
    nn.Embedding: (("num_embeddings", "weight", 0), ("embedding_dim", "weight", 1)),
    RemappedEmbedding: (("num_embeddings", "weight", 0), ("embedding_dim", "weight", 1)),
}


def load_weights(module: nn.Module, state: Any, *, what: str) -> None:
    """`load_state_dict`, after resizing parameters and buffers whose stored shape differs."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StageError(f"{what}: expected a state dict of tensors")
    own = module.state_dict()
    unknown = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    if unknown or missing:
        raise StageError(
            f"{what}: the weights do not fit the architecture "
            f"(unexpected: {', '.join(unknown[:5]) or 'none'}; missing: "
            f"{', '.join(missing[:5]) or 'none'})"
        )
    resized: set[nn.Module] = set()
    for key, tensor in state.items():
        if own[key].shape == tensor.shape:
            continue
        owner_name, _, leaf = key.rpartition(".")
        owner = module.get_submodule(owner_name)
        current = getattr(owner, leaf)
        replacement = torch.empty(tensor.shape, dtype=current.dtype)
        if isinstance(current, nn.Parameter):
            setattr(owner, leaf, nn.Parameter(replacement, requires_grad=current.requires_grad))
        else:
            owner.register_buffer(leaf, replacement)
        resized.add(owner)
    for owner in resized:
        for attr, tensor_name, dim in _WIDTH_ATTRS.get(type(owner), ()):
            setattr(owner, attr, getattr(owner, tensor_name).shape[dim])
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise StageError(f"{what}: the weights do not fit the architecture: {exc}") from exc


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def nonzero_parameter_count(module: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p).item()) for p in module.parameters())


def macs(module: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates for one sample, from torch's own FLOP counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(example[:1])
    return int(counter.get_total_flops()) // 2
