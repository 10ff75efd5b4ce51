"""Runs whose variant is a real ONNX file in the artifact store, recorded through the
catalog's own API as the executor records them (as tests/helpers/catalog.py records runs), so
that what an alias or a URI resolves to can be hashed, and run by onnxruntime against numpy.

The model is a tiny `y = x @ W + b` built with onnx's helpers; `scale` sets W, so that two
runs' files differ and each one's output can be checked (`expected`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compressgate.evaluators.results import Estimate
from compressgate.recipes.load import parse_recipe
from compressgate.registry.catalog.records import RecipeRef, RunRecord, StageRecord
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.catalog.store import ArtifactStore
from compressgate.registry.kernel.digests import sha256_bytes
from tests.helpers.catalog import STAGES, judged, recipe_file


def tiny_onnx(folder: Path, scale: float, *, external: bool = False) -> tuple[str, ...]:
    """`y = x @ W + b` (x: [batch, 4], y: [batch, 3]) as folder/model.onnx, its weights in
    model.onnx.data with `external`; the file names, the model's first."""
    weights = (np.arange(12, dtype=np.float32).reshape(4, 3) - 5.0) * scale
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.array([1.0, -1.0, 0.5], dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    if not external:
        onnx.save_model(model, folder / "model.onnx")
        return ("model.onnx",)
    onnx.save_model(
        model,
        folder / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    return ("model.onnx", "model.onnx.data")


def expected(scale: float, x: np.ndarray) -> np.ndarray:
    weights = (np.arange(12, dtype=np.float32).reshape(4, 3) - 5.0) * scale
    y: np.ndarray = x @ weights + np.array([1.0, -1.0, 0.5], dtype=np.float32)
    return y


def accuracy_of(value: float) -> Estimate:
    return Estimate(
        estimate=value,
        ci_low=value - 0.02,
        ci_high=value + 0.02,
        n=450,
        method="wilson",
        higher_is_better=True,
    )


def record(
    root: Path,
    run_id: str,
    scale: float,
    *,
    external: bool = False,
    accuracy: float = 0.97,
    recipe_name: str = "digits",
) -> str:
    """A finished run of the digits recipe (tests/helpers/catalog.py), named `recipe_name`,
    whose every stage measured `accuracy` (its gate passes above 0.9) and whose int8 variant is
    a real ONNX model stored in `root`'s artifact store; its int8 variant's id."""
    recipe = root / ("recipe.yaml" if recipe_name == "digits" else f"{recipe_name}.yaml")
    root.mkdir(parents=True, exist_ok=True)
    if not recipe.exists():
        recipe_file(recipe)
        if recipe_name != "digits":
            text = recipe.read_text().replace("name: digits,", f"name: {recipe_name},")
            recipe.write_text(text)
    content = recipe.read_bytes()
    parsed, _ = parse_recipe(content, str(recipe))
    artifact = ArtifactStore(root).put_tree(
        root / "models" / run_id, tiny_onnx(root / "models" / run_id, scale, external=external)
    )
    run = RunRecord(
        run_id=run_id,
        recipe=RecipeRef(
            name=parsed.metadata.name,
            version=parsed.metadata.version,
            sha256=sha256_bytes(content),
            path=str(recipe),
            signers=[],
        ),
        status="succeeded",
        started_at="2026-11-23T10:00:00Z",
        finished_at="2026-11-23T10:01:00Z",
        workspace=str(root),
        seeds=[0],
    )
    parent = None
    for index, name in enumerate(STAGES):
        real = name == "int8"
        sha = artifact.sha256 if real else f"{run_id[-6:]}{index:02d}".ljust(64, "0")
        run.stages.append(
            StageRecord(
                seed=0,
                name=name,
                kind=name if index == 0 else "distill" if index == 1 else "quantize",
                status="done",
                format="onnx" if real else "torch",
                artifact_sha256=sha,
                parent_sha256=parent,
                size_bytes=artifact.size_bytes if real else 1000,
                files=artifact.to_dict()["files"] if real else [],
                metrics={"accuracy": accuracy_of(accuracy)},
            )
        )
        parent = sha
    decisions, verdicts = judged(run, parsed.gates, "int8")
    with Catalog(f"sqlite:///{root / 'catalog.db'}", create=True) as catalog:
        catalog.record_run_start(
            run, recipe_content=content.decode(), envelope="{}", lock_sha256=""
        )
        for stage in run.stages:
            catalog.record_stage(run_id, run.recipe.sha256, stage, {"name": stage.name})
        catalog.record_run_end(run, decisions, verdicts)
    return f"{run_id}/0/int8"
