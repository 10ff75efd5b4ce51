"""What every stage shares: the registry of kinds, the context a stage runs in, its errors.

A stage is `apply(model, spec, ctx) -> model`: a variant in, a variant out. What it measures
on the way (achieved sparsity, parity, calibration samples used) it records in `ctx.details`.
It writes files only under `ctx.workdir`, which the executor stores content-addressed and then
deletes, so a stage that fails leaves nothing behind.

A third-party stage (a plug-in, docs/plugins.md) is a `Stage` subclass too, found through the
entry point group `compressgate.stages` and loaded only under a trust policy that allows its
distribution (`compressgate.recipes.plugins`). It declares a pydantic `Params` model: its
`apply` is given the recipe entry's `params` validated by it, not the entry itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from compressgate.recipes import training
from compressgate.recipes.data import Splits
from compressgate.recipes.manifest import STAGE_KINDS, PluginStageSpec
from compressgate.recipes.models import TorchModel, Variant
from compressgate.recipes.plugins import Plugins, params_of
from compressgate.recipes.training import Ticker
from compressgate.registry.kernel.digests import canonical_json, sha256_bytes
from compressgate.registry.kernel.errors import StageError
from compressgate.registry.kernel.plugins import Registry

S = TypeVar("S", bound=BaseModel)


class Progress(Protocol):
    """Shows progress of a long step; the executor's is a rich progress bar."""

    def task(self, description: str, total: int) -> AbstractContextManager[Ticker]: ...


class _NullTicker:
    def advance(self, steps: int = 1) -> None:
        pass


class NullProgress:
    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Ticker]:
        yield _NullTicker()


@dataclass
class StageContext:
    """Everything a stage may use: no globals."""

    stage: str
    seed: int
    splits: Splits
    workdir: Path
    base: Path | None = None
    progress: Progress = field(default_factory=NullProgress)
    reference: TorchModel | None = None
    task: str = "classification"  # the recipe's model.task: "embedding" fine-tunes on vectors
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def record(self, **values: Any) -> None:
        self.details.update(values)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def error(self, message: str, *, hint: str | None = None) -> StageError:
        return StageError(
            f"stage '{self.stage}' (seed {self.seed}): {message}", stage=self.stage, hint=hint
        )

    def fit(
        self,
        module: Any,
        *,
        description: str,
        purpose: str,
        epochs: int,
        lr: float,
        batch_size: int,
        **options: Any,
    ) -> None:
        """Train on the train split (or `split`) with a progress bar, seeded for `purpose`."""
        split = options.pop("split", self.splits.train)
        with self.progress.task(description, epochs) as tick:
            training.fit(
                module,
                split,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                seed=self.seed_for(purpose),
                ticker=tick,
                padding=self.splits.padding,
                **options,
            )

    def seed_for(self, purpose: str) -> int:
        """A seed for one purpose of this stage, derived from the run seed and the stage name."""
        digest = sha256_bytes(canonical_json([self.seed, self.stage, purpose]))
        return int(digest[:8], 16)


class Stage(Generic[S]):
    """A compression stage of one `kind`; `accepts` lists the variant formats it takes. A
    plug-in's `Params` is the model of its recipe entry's `params` (none: it takes none)."""

    kind: ClassVar[str]
    accepts: ClassVar[tuple[str, ...]] = ("torch",)
    Params: ClassVar[type[BaseModel] | None] = None

    def apply(self, model: Variant, spec: S, ctx: StageContext) -> Variant:
        raise NotImplementedError

    def bind(self, spec: BaseModel) -> Any:
        """What `apply` is given for the recipe's entry `spec`: a built-in's spec itself, a
        plug-in's `params` validated by its `Params` model."""
        if isinstance(spec, PluginStageSpec):
            return params_of(type(self), spec.params)
        return spec

    def torch_input(self, model: Variant, ctx: StageContext) -> TorchModel:
        if not isinstance(model, TorchModel):
            raise ctx.error(
                f"a {self.kind} stage needs a torch model, but the incoming variant is ONNX",
                hint="put torch stages (distill, prune, qat) before quantize and export",
            )
        return model


STAGES: Registry[type[Stage[Any]]] = Registry("stage")

_MODULES = {kind: f"compressgate.recipes.stages.{kind}" for kind in STAGE_KINDS}


def load_stages() -> Registry[type[Stage[Any]]]:
    """Import the built-in stage modules (explicitly, no package walking); the registry."""
    for module in _MODULES.values():
        importlib.import_module(module)
    return STAGES


def stage_for(kind: str, plugins: Plugins | None = None) -> Stage[Any]:
    """The stage of `kind`: a built-in, or a plug-in the run loaded (`plugins`)."""
    if kind not in STAGE_KINDS and plugins is not None and kind in plugins.stages:
        implementation: Stage[Any] = plugins.stages[kind].target()
        return implementation
    return load_stages().get(kind)()
