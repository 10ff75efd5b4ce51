"""The stages on a small digits CNN, called directly: what each one promises and how it fails."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from compressgate.recipes import models, onnxio, training
from compressgate.recipes.data import Split, Splits
from compressgate.recipes.examples import digits
from compressgate.recipes.manifest import (
    STAGE_KINDS,
    DistillSpec,
    ExportSpec,
    PruneSpec,
    QuantizeSpec,
    StageSpec,
)
from compressgate.recipes.models import OnnxModel, TorchModel, allowed_modules
from compressgate.recipes.stages.base import StageContext, load_stages, stage_for
from compressgate.registry.kernel.errors import ManifestError, StageError

SMALL = {"channels": [8, 16], "hidden": 32}


@pytest.fixture(scope="module")
def splits() -> Splits:
    return digits.load(0)


@pytest.fixture(scope="module")
def trained(splits: Splits) -> TorchModel:
    torch.manual_seed(0)
    model = models.build("compressgate.recipes.examples.digits:build_cnn", SMALL, what="test model")
    training.fit(model.module, splits.train, epochs=4, lr=3e-3, batch_size=64, seed=0)
    return model


def fresh(model: TorchModel, tmp_path: Path) -> TorchModel:
    """A copy through the store format, so one test's stage cannot change another's model."""
    models.save_torch(model, tmp_path / "copy")
    return models.load_torch(tmp_path / "copy" / models.TORCH_FILE)


def ctx(splits: Splits, tmp_path: Path, stage: str = "s") -> StageContext:
    workdir = tmp_path / f"work-{stage}"
    workdir.mkdir()
    return StageContext(stage=stage, seed=0, splits=splits, workdir=workdir)


def without_calibration(splits: Splits) -> Splits:
    empty = Split(splits.calibration.x[:0], splits.calibration.y[:0])
    return Splits(splits.train, empty, splits.test, splits.class_names)


def accuracy(model: TorchModel | OnnxModel, split: Split) -> float:
    from compressgate.evaluators.runners import logits

    return float((logits(model, split.x).argmax(1) == split.y).float().mean())


def test_registry_kinds_equal_the_union_kind_literals() -> None:
    stage_types = typing.get_args(typing.get_args(StageSpec)[0])
    assert load_stages().kinds() == tuple(sorted(STAGE_KINDS))
    assert sorted(t.model_fields["kind"].default for t in stage_types) == sorted(STAGE_KINDS)


def test_unknown_stage_kind_lists_known_kinds() -> None:
    with pytest.raises(ManifestError, match="known: distill, export, prune, quantize"):
        stage_for("qantize")


def test_stored_pruned_model_loads_back_with_its_shrunk_tensors(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = PruneSpec(
        name="p", method="structured", scope="layer", sparsity=0.5, rounds=1, finetune_epochs=0
    )
    pruned = stage_for("prune").apply(fresh(trained, tmp_path), spec, ctx(splits, tmp_path))
    assert isinstance(pruned, TorchModel)
    models.save_torch(pruned, tmp_path / "pruned")
    again = models.load_torch(tmp_path / "pruned" / models.TORCH_FILE)
    x = splits.test.x[:32]
    assert torch.equal(training.predict(pruned.module, x), training.predict(again.module, x))
    assert again.module[0].out_channels == pruned.module[0].weight.shape[0] == 4


def test_structured_pruning_removes_channels_and_records_counts(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = PruneSpec(
        name="p", method="structured", scope="layer", sparsity=0.5, rounds=2, finetune_epochs=1
    )
    c = ctx(splits, tmp_path)
    pruned = stage_for("prune").apply(fresh(trained, tmp_path), spec, c)
    assert isinstance(pruned, TorchModel)
    conv1, conv2, fc1, fc2 = (pruned.module[i] for i in (0, 2, 6, 8))
    assert (conv1.weight.shape[0], conv2.weight.shape[0], fc1.weight.shape[0]) == (4, 8, 16)
    assert fc2.weight.shape == (10, 16)  # the output layer keeps its 10 classes
    before = models.parameter_count(trained.module)
    assert c.details["params_before"] == before
    assert c.details["params_after"] == models.parameter_count(pruned.module) < before / 3
    assert c.details["achieved_sparsity"] == pytest.approx(1 - c.details["params_after"] / before)
    assert [r["round"] for r in c.details["rounds"]] == [1, 2]
    assert accuracy(pruned, splits.test) > 0.6  # chance is 0.1


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_pruning_reaches_the_target_and_makes_masks_permanent(
    scope: str, trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = PruneSpec(
        name="p",
        method="magnitude",
        scope=scope,
        sparsity=0.6,
        rounds=3,
        finetune_epochs=1,
        skip=("0",),
    )
    c = ctx(splits, tmp_path)
    pruned = stage_for("prune").apply(fresh(trained, tmp_path), spec, c)
    assert isinstance(pruned, TorchModel)
    names = [n for n, _ in pruned.module.named_parameters()]
    assert not any("_orig" in n for n in names)  # no pruning re-parametrisation left behind
    weights = [pruned.module[i].weight for i in (2, 6, 8)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == pytest.approx(0.6, abs=0.01)
    assert int((pruned.module[0].weight == 0).sum()) == 0  # skipped
    if scope == "layer":
        for w in weights:
            assert float((w == 0).float().mean()) == pytest.approx(0.6, abs=0.01)
    assert c.details["rounds"][-1]["weight_sparsity"] == pytest.approx(0.6, abs=0.01)


def test_prune_skip_of_unknown_layer_names_the_layer_and_the_known_ones(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = PruneSpec(name="prune", method="structured", sparsity=0.5, skip=("conv9",))
    with pytest.raises(
        StageError,
        match=r"stage 'prune' \(seed 0\): skip: unknown layer 'conv9'"
        r"; prunable layers: 0, 2, 6, 8",
    ):
        stage_for("prune").apply(fresh(trained, tmp_path), spec, ctx(splits, tmp_path, "prune"))


def test_distillation_trains_a_student_with_the_teacher_frozen(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    teacher = fresh(trained, tmp_path)
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    spec = DistillSpec.model_validate(
        {
            "name": "d",
            "student": {
                "factory": "compressgate.recipes.examples.digits:build_student",
                "args": {"channels": [6, 12], "hidden": 24},
            },
            "epochs": 6,
            "lr": 3e-3,
            "temperature": 4,
            "temperature_final": 2,
            "hints": [{"student_layer": "3", "teacher_layer": "3"}],
        }
    )
    c = ctx(splits, tmp_path)
    student = stage_for("distill").apply(teacher, spec, c)
    assert isinstance(student, TorchModel)
    assert student.factory == "compressgate.recipes.examples.digits:build_student"
    assert models.parameter_count(student.module) < models.parameter_count(teacher.module)
    for key, value in teacher.module.state_dict().items():
        assert torch.equal(value, before[key]), f"teacher weight {key} changed"
    assert accuracy(student, splits.test) > 0.6  # chance is 0.1
    assert c.details["hints"] == 1 and c.details["temperature_final"] == 2


def test_student_that_does_not_fit_the_data_is_a_stage_error(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = DistillSpec.model_validate(
        {
            "name": "distill",
            "student": {
                "factory": "torch.nn:Linear",
                "args": {"in_features": 3, "out_features": 10},
            },
        }
    )
    with (
        allowed_modules(("compressgate.recipes.examples", "torch.nn")),
        pytest.raises(StageError, match=r"stage 'distill' \(seed 0\): the student does not fit"),
    ):
        stage_for("distill").apply(trained, spec, ctx(splits, tmp_path, "distill"))


def test_a_student_factory_that_raises_names_the_factory(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = DistillSpec.model_validate(
        {
            "name": "distill",
            "student": {
                "factory": "compressgate.recipes.examples.digits:build_student",
                "args": {"hidden": -1},
            },
        }
    )
    with pytest.raises(
        StageError,
        match=r"the factory compressgate.recipes.examples.digits:build_student "
        r"raised RuntimeError",
    ):
        stage_for("distill").apply(trained, spec, ctx(splits, tmp_path, "distill"))


def test_static_int8_keeps_first_and_last_in_float_and_stays_accurate(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = QuantizeSpec(name="q", method="static", calibration_samples=128)
    c = ctx(splits, tmp_path)
    quantized = stage_for("quantize").apply(trained, spec, c)
    assert isinstance(quantized, OnnxModel)
    graph = onnx.load(str(quantized.path)).graph
    int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    assert {"2.weight_quantized", "6.weight_quantized"} <= int8
    assert not {"0.weight_quantized", "8.weight_quantized"} & int8  # first and last in float
    scales = {i.name: i for i in graph.initializer}
    assert list(scales["2.weight_scale"].dims) == [16]  # one scale per output channel
    assert c.details["calibration_samples"] == 128
    assert c.details["kept_float"] == ["node_conv2d", "node_linear_1"]
    assert abs(accuracy(quantized, splits.test) - accuracy(trained, splits.test)) < 0.03


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods_give_a_working_model(
    method: str, trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = QuantizeSpec(name="q", method="static", calibration=method, calibration_samples=64)  # type: ignore[arg-type]
    quantized = stage_for("quantize").apply(trained, spec, ctx(splits, tmp_path))
    assert accuracy(quantized, splits.test) > accuracy(trained, splits.test) - 0.05


def test_dynamic_int8_needs_no_calibration(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    no_calibration = without_calibration(splits)
    spec = QuantizeSpec(name="q", method="dynamic", keep_float=())
    c = ctx(no_calibration, tmp_path)
    quantized = stage_for("quantize").apply(trained, spec, c)
    assert c.details["calibration_samples"] == 0
    assert accuracy(quantized, splits.test) > accuracy(trained, splits.test) - 0.03


def test_empty_calibration_split_is_a_stage_error(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    no_calibration = without_calibration(splits)
    spec = QuantizeSpec(name="int8", method="static")
    with pytest.raises(StageError, match=r"stage 'int8' \(seed 0\): the calibration split has 0"):
        stage_for("quantize").apply(trained, spec, ctx(no_calibration, tmp_path, "int8"))


def test_keep_float_of_unknown_layer_lists_the_quantizable_ones(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = QuantizeSpec(name="int8", method="static", keep_float=("features.9",))
    with pytest.raises(
        StageError,
        match=r"keep_float: unknown layer 'features.9'; quantizable "
        r"layers: 0, 2, 6, 8, node_conv2d",
    ):
        stage_for("quantize").apply(trained, spec, ctx(splits, tmp_path, "int8"))


def test_keep_float_takes_torch_module_paths(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = QuantizeSpec(name="q", method="static", keep_float=("6",))
    c = ctx(splits, tmp_path)
    stage_for("quantize").apply(trained, spec, c)
    assert c.details["kept_float"] == ["node_linear"]
    assert (c.details["weighted_layers"], c.details["int8_layers"]) == (4, 3)


@pytest.mark.parametrize(
    ("method", "keep_float", "int8"),
    [("static", (), 4), ("static", ("first", "last"), 2), ("dynamic", (), 4)],
)
def test_the_record_counts_the_weighted_layers_and_those_in_int8(
    method: str,
    keep_float: tuple[str, ...],
    int8: int,
    trained: TorchModel,
    splits: Splits,
    tmp_path: Path,
) -> None:
    spec = QuantizeSpec(name="q", method=method, keep_float=keep_float)  # type: ignore[arg-type]
    c = ctx(splits, tmp_path)
    stage_for("quantize").apply(trained, spec, c)
    assert c.details["weighted_layers"] == 4  # two convolutions, two linear layers
    assert c.details["int8_layers"] == int8
    assert len(c.details["kept_float"]) == 4 - int8


@pytest.mark.parametrize(
    ("stamp", "path"),
    [
        ("['', '6', 'linear']", "6"),
        ("['', 'features', 'features.0', 'conv2d']", "features.0"),
        (
            "['', 'encoder', 'encoder.encoder', 'encoder.encoder.layer.0', "
            "'encoder.encoder.layer.0.attention', 'encoder.encoder.layer.0.attention.self', "
            "'encoder.encoder.layer.0.attention.self.query', 'linear']",
            "encoder.encoder.layer.0.attention.self.query",
        ),
        ("['', 'blocks', 'blocks.1@1', 'blocks.1.fc@1', 'linear_3']", "blocks.1.fc"),
        ("['', 'features', '0', 'conv2d']", "features.0"),  # one level at a time: joined
        ("['', 'conv2d']", ""),
        ("not a list", ""),
        ("[1, 2]", ""),
    ],
)
def test_module_path_is_the_innermost_module_of_the_exporter_stamp(stamp: str, path: str) -> None:
    assert onnxio.module_path(stamp) == path


def test_qat_leaves_weights_on_the_int8_grid_and_exports_int8(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    model = fresh(trained, tmp_path)
    spec = QuantizeSpec(name="q", method="qat", qat_epochs=1, calibration_samples=64)
    c = ctx(splits, tmp_path)
    quantized = stage_for("quantize").apply(model, spec, c)
    assert c.details["qat_layers"] == ["2", "6"]
    weight = model.module[2].weight.detach()
    scale = weight.abs().flatten(1).amax(1) / 127
    steps = weight / scale[:, None, None, None]
    assert torch.allclose(steps, steps.round(), atol=1e-3)  # on the grid it was trained on
    graph = onnx.load(str(quantized.path)).graph  # type: ignore[union-attr]
    assert any(i.name == "2.weight_quantized" for i in graph.initializer)
    assert accuracy(quantized, splits.test) > accuracy(trained, splits.test) - 0.05


@pytest.mark.parametrize("external", [False, True])
def test_export_checks_parity_and_handles_external_data(
    external: bool, trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = ExportSpec(name="e", opset=18, external_data=external)
    c = ctx(splits, tmp_path)
    exported = stage_for("export").apply(trained, spec, c)
    assert isinstance(exported, OnnxModel)
    assert exported.files == (("model.onnx", "model.onnx.data") if external else ("model.onnx",))
    assert c.details["parity_max_abs_diff"] <= 1e-4
    assert c.details["parity_top1_agreement"] == 1.0
    proto = onnx.load(str(exported.path))
    assert next(o.version for o in proto.opset_import if o.domain == "") == 18
    assert not any(n.metadata_props for n in proto.graph.node)  # no paths or stack traces
    got = onnxio.run(exported, splits.test.x[:16]).numpy()
    want = training.predict(trained.module, splits.test.x[:16]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_of_a_quantized_model_records_parity_with_its_float_ancestor(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    quantized = stage_for("quantize").apply(
        trained, QuantizeSpec(name="q", method="static"), ctx(splits, tmp_path, "q")
    )
    c = ctx(splits, tmp_path, "e")
    c.reference = trained
    exported = stage_for("export").apply(quantized, ExportSpec(name="e"), c)
    assert isinstance(exported, OnnxModel)
    assert exported.path.read_bytes() == quantized.path.read_bytes()  # type: ignore[union-attr]
    assert 0 < c.details["parity_max_abs_diff"] < 1.0
    assert c.details["parity_top1_agreement"] > 0.95


def test_export_of_a_model_that_cannot_be_faithful_fails(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = ExportSpec(name="export", parity_atol=1e-12)
    with pytest.raises(StageError, match=r"ONNX output differs from torch by up to"):
        stage_for("export").apply(trained, spec, ctx(splits, tmp_path, "export"))


def test_an_ensemble_of_teachers_from_checkpoints_is_averaged_and_frozen(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    torch.save(trained.module.state_dict(), tmp_path / "teacher.pt")
    ref = {
        "factory": "compressgate.recipes.examples.digits:build_cnn",
        "args": SMALL,
        "checkpoint": "teacher.pt",
    }
    spec = DistillSpec.model_validate(
        {
            "name": "d",
            "student": {
                "factory": "compressgate.recipes.examples.digits:build_student",
                "args": {"channels": [6, 12], "hidden": 24},
            },
            "teachers": [ref, ref],
            "epochs": 4,
            "lr": 3e-3,
        }
    )
    c = ctx(splits, tmp_path)
    c.base = tmp_path
    incoming = fresh(trained, tmp_path)
    student = stage_for("distill").apply(incoming, spec, c)
    assert c.details["teachers"] == 2
    assert accuracy(student, splits.test) > 0.5  # chance is 0.1


def test_a_teacher_without_weights_is_refused(
    trained: TorchModel, splits: Splits, tmp_path: Path
) -> None:
    spec = DistillSpec.model_validate(
        {
            "name": "distill",
            "student": {"factory": "compressgate.recipes.examples.digits:build_student"},
            "teachers": [{"factory": "compressgate.recipes.examples.digits:build_cnn"}],
        }
    )
    with pytest.raises(StageError, match=r"teachers\[0\] .* has no checkpoint"):
        stage_for("distill").apply(trained, spec, ctx(splits, tmp_path, "distill"))
