"""Variants as the engine makes them and reads them back: the baseline built from the recipe's
model spec, a stage applied to its parent, a stored variant read back (digests checked), what
the evaluators see of it (its `Subject`) and the counts its stage record carries.

The engine and on-demand evaluation (`compressgate.registry.run.evaluate`) read variants back
through the same functions, so that both measure exactly what the store holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from compressgate.evaluators.base import Subject
from compressgate.evaluators.results import SizeResult
from compressgate.gates.judge import BASELINE as JUDGED_AGAINST
from compressgate.recipes import models, onnxio
from compressgate.recipes.data import Splits
from compressgate.recipes.manifest import ModelSpec
from compressgate.recipes.models import OnnxModel, TorchModel, Variant
from compressgate.recipes.stages.base import Progress, StageContext
from compressgate.recipes.training import fit
from compressgate.registry.catalog.records import StageRecord
from compressgate.registry.catalog.store import Artifact, ArtifactStore, StoredFile
from compressgate.registry.kernel.errors import CompressgateError, StageError
from compressgate.registry.run.determinism import seed_everything

BASELINE = JUDGED_AGAINST  # the first stage of every seed


def build_baseline(
    spec: ModelSpec,
    seed: int,
    splits: Splits,
    stage: StageRecord,
    scratch: Path,
    *,
    base: Path,
    store: ArtifactStore,
    progress: Progress,
) -> Variant:
    """The recipe's model for one seed: its ONNX file as is, or its factory's module (from its
    checkpoint, trained when the spec says so), whose float32 ONNX export is stored as the
    yardstick of compressed sizes (`onnx_sha256`, `onnx_size_bytes` in `stage.details`)."""
    if spec.onnx is not None:
        target = scratch / "baseline"
        target.mkdir()
        shutil.copyfile(base / spec.onnx, target / models.ONNX_FILE)
        return OnnxModel(target)
    assert spec.factory is not None
    seeds = StageContext(stage=BASELINE, seed=seed, splits=splits, workdir=scratch)
    torch.manual_seed(seeds.seed_for("init"))
    seed_everything(seeds.seed_for("global"))
    model = models.build(
        spec.factory,
        dict(spec.args),
        what=f"baseline (seed {seed})",
        base=base,
        checkpoint=base / spec.checkpoint if spec.checkpoint else None,
    )
    if spec.train is not None:
        train = spec.train
        with progress.task(f"train baseline (seed {seed})", train.epochs) as tick:
            try:
                fit(
                    model.module,
                    splits.train,
                    epochs=train.epochs,
                    lr=train.lr,
                    batch_size=train.batch_size,
                    seed=seeds.seed_for("batches"),
                    ticker=tick,
                )
            except RuntimeError as exc:
                raise StageError(
                    f"baseline (seed {seed}): training failed: {exc}",
                    hint="check that the model fits the data's shapes and classes",
                ) from exc
        stage.details["trained"] = {"epochs": train.epochs, "lr": train.lr}
    # The float32 baseline as ONNX: the yardstick the compressed sizes are measured by.
    exported, _ = onnxio.export(
        model.module, splits.train.x, scratch / "onnx", opset=18, padding=splits.padding
    )
    onnx_artifact = store.put_tree(exported.directory, exported.files)
    stage.details["onnx_sha256"] = onnx_artifact.sha256
    stage.details["onnx_size_bytes"] = onnx_artifact.size_bytes
    return model


def apply_stage(implementation: Any, model: Variant, spec: Any, ctx: StageContext) -> Variant:
    """`implementation` applied to `model`; anything but our own errors is the stage's error."""
    try:
        result: Variant = implementation.apply(model, spec, ctx)
    except CompressgateError:
        raise
    except Exception as exc:
        raise ctx.error(f"{type(exc).__name__}: {exc}") from exc
    return result


def load_variant(
    store: ArtifactStore, artifact: Artifact, fmt: str, base: Path, scratch: Path
) -> Variant:
    """A stored variant, read back with its digest checked (ONNX files go under `scratch`)."""
    if fmt == "torch":
        return models.load_torch(store.read_bytes(artifact.files[0]), base=base)
    directory = scratch / artifact.sha256
    if not (directory / artifact.primary).is_file():
        store.materialize(artifact, directory)
    return OnnxModel(directory)


def subject_of(
    store: ArtifactStore,
    stage: StageRecord,
    variant: Variant,
    reference: Variant | None,
    scratch: Path,
) -> Subject:
    """What the evaluators see of a stored stage output. `reference` is its nearest float torch
    ancestor (whose counts an ONNX variant shares)."""
    onnx = variant if isinstance(variant, OnnxModel) else None
    onnx_size = stage.size_bytes if onnx is not None else None
    if stage.kind == BASELINE and "onnx_sha256" in stage.details:
        # The float32 ONNX export of a torch baseline: the yardstick of sizes and of
        # onnxruntime latencies.
        sha, size = stage.details["onnx_sha256"], stage.details["onnx_size_bytes"]
        yardstick = Artifact.of((StoredFile(models.ONNX_FILE, sha, size),))
        directory = scratch / sha
        if not (directory / models.ONNX_FILE).is_file():
            store.materialize(yardstick, directory)
        onnx, onnx_size = OnnxModel(directory), size
    torch_form = variant if isinstance(variant, TorchModel) else reference
    return Subject(
        stage=stage.name,
        variant=variant,
        size_bytes=stage.size_bytes or 0,
        sha256=stage.artifact_sha256,
        onnx=onnx,
        onnx_size_bytes=onnx_size,
        counts_from=torch_form if isinstance(torch_form, TorchModel) else None,
    )


def record_counts(stage: StageRecord, subject: Subject, size: Any, inputs: torch.Tensor) -> None:
    """Parameters, non-zero parameters and MACs (at `inputs`) on the stage record: from the size
    evaluator when the recipe declares it, else counted here."""
    module = subject.counts_from
    if module is None:
        return
    if isinstance(size, SizeResult) and size.params is not None:
        assert size.nonzero_params is not None and size.macs is not None
        counts = (size.params.estimate, size.nonzero_params.estimate, size.macs.estimate)
        stage.params, stage.nonzero_params, stage.macs = (int(c) for c in counts)
    else:
        stage.params = models.parameter_count(module.module)
        stage.nonzero_params = models.nonzero_parameter_count(module.module)
        stage.macs = models.macs(module.module, inputs)
    if module is not subject.variant:
        # Quantization and export keep the architecture: counts are the float ancestor's.
        stage.details.setdefault("counts_from", "nearest float torch ancestor")
