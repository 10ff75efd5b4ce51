"""int8 quantization through `onnxruntime.quantization`, and quantization-aware training.

- `static`: the float model is exported to ONNX, calibrated on `calibration_samples` samples of
  the calibration split (`minmax`, `entropy` or `percentile`), and written in QDQ form:
  int8 weights, symmetric, per channel; uint8 activations, asymmetric, per tensor.
- `dynamic`: int8 weights, activations quantized on the fly at run time; no calibration.
- `qat`: fine-tuning in torch with fake quantization (torch's own `fake_quantize_per_*_affine`
  ops with straight-through gradients, not the deprecated `torch.ao.quantization`): weights on
  the symmetric per-channel int8 grid, layer inputs on a per-tensor uint8 grid from running
  min/max. The trained weights are left on the grid, and the model is then quantized like
  `static`, so onnxruntime's int8 weights equal the grid the model was trained on.

`keep_float` names layers left in float (mixed precision): `first` and `last` (the first and
last Conv/Gemm/MatMul of the graph), a torch module path such as `features.0`, or an ONNX node
name.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from compressgate.recipes import models, onnxio
from compressgate.recipes.manifest import QuantizeSpec
from compressgate.recipes.models import ONNX_FILE, OnnxModel, TorchModel, Variant
from compressgate.recipes.stages.base import STAGES, Stage, StageContext

_OPSET = 18


@STAGES.register("quantize")
class Quantize(Stage[QuantizeSpec]):
    kind = "quantize"
    accepts = ("torch", "onnx")

    def apply(self, model: Variant, spec: QuantizeSpec, ctx: StageContext) -> Variant:
        if spec.method == "qat":
            torch_model = self.torch_input(model, ctx)
            self._qat(torch_model, spec, ctx)
            model = torch_model
        float_dir = ctx.workdir / "float"
        if isinstance(model, TorchModel):
            float_model, layers = onnxio.export(
                model.module,
                ctx.splits.train.x[:2],
                float_dir,
                opset=_OPSET,
                padding=ctx.splits.padding,
            )
        else:
            float_model, layers = model, onnxio.layers(model)
        excluded = self._keep_float(spec, layers, ctx)
        prepared = ctx.workdir / "prepared.onnx"
        from onnxruntime.quantization import QuantType
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # A dynamic sequence axis (declared padding) leaves symbolic dimensions that shape
        # inference can only reconcile by merging them (it fails otherwise).
        quant_pre_process(
            str(float_model.path),
            str(prepared),
            skip_optimization=True,
            **({} if ctx.splits.padding is None else {"auto_merge": True}),
        )
        out_dir = ctx.workdir / "out"
        out_dir.mkdir()
        target = out_dir / ONNX_FILE
        if spec.method == "dynamic":
            from onnxruntime.quantization import quantize_dynamic

            quantize_dynamic(
                str(prepared),
                str(target),
                per_channel=spec.per_channel,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
            )
            used = 0
        else:
            used = self._static(prepared, target, spec, ctx, excluded)
        weighted = onnxio.weighted_layers(float_model)
        ctx.record(
            method=spec.method,
            per_channel=spec.per_channel,
            weights="int8 symmetric",
            activations="dynamic" if spec.method == "dynamic" else "uint8 asymmetric",
            calibration=None if spec.method == "dynamic" else spec.calibration,
            calibration_samples=used,
            kept_float=excluded,
            # Layers holding weights in the float model, and how many of them compute in int8
            # (the rest: kept_float); products of two activations are neither.
            weighted_layers=len(weighted),
            int8_layers=onnxio.int8_layers(OnnxModel(out_dir)),
        )
        for scratch in (prepared, float_dir):
            _remove(scratch)
        return OnnxModel(out_dir)

    def _keep_float(
        self, spec: QuantizeSpec, layers: tuple[onnxio.LayerNode, ...], ctx: StageContext
    ) -> list[str]:
        if not layers:
            raise ctx.error("the model has no Conv, Gemm or MatMul layer to quantize")
        excluded: list[str] = []
        for name in spec.keep_float:
            if name == "first":
                matches = [layers[0]]
            elif name == "last":
                matches = [layers[-1]]
            else:  # a node, a layer's module path, or a block's: the layers inside it
                matches = [
                    n
                    for n in layers
                    if name in (n.node, n.module) or n.module.startswith(name + ".")
                ]
            if not matches:
                known = sorted({n.module for n in layers if n.module} | {n.node for n in layers})
                if any(n.module for n in layers):
                    hint = (
                        "use 'first', 'last', an ONNX node name or a torch module path (a "
                        "block's keeps every layer in it)"
                    )
                else:  # an ONNX input: the export stage drops the exporter's stamps
                    hint = (
                        "this stage's input is an ONNX model, which carries no torch module "
                        "paths: name its ONNX nodes, or quantize the torch model (the quantize "
                        "stage before the export stage)"
                    )
                raise ctx.error(
                    f"keep_float: unknown layer {name!r}; quantizable layers: {', '.join(known)}",
                    hint=hint,
                )
            excluded += [n.node for n in matches if n.node not in excluded]
        return excluded

    def _static(
        self,
        prepared: Path,
        target: Path,
        spec: QuantizeSpec,
        ctx: StageContext,
        excluded: list[str],
    ) -> int:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        split = ctx.splits.calibration
        if len(split) == 0:
            raise ctx.error(
                "the calibration split has 0 samples; static quantization needs some",
                hint="give the data loader a calibration fraction above 0",
            )
        used = min(spec.calibration_samples, len(split))
        if used < spec.calibration_samples:
            ctx.warn(
                f"calibration: {spec.calibration_samples} samples asked, the calibration split "
                f"has {len(split)}; used {used}"
            )
        x = split.x[:used].numpy()

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self.batches: Iterator[dict[str, Any]] = iter(
                    {onnxio.INPUT_NAME: x[i : i + 64]} for i in range(0, len(x), 64)
                )

            def get_next(self) -> dict[str, Any] | None:
                return next(self.batches, None)

        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[spec.calibration]
        with ctx.progress.task(f"calibrate ({spec.calibration}, {used} samples)", 1) as tick:
            quantize_static(
                str(prepared),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=spec.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=method,
                calibration_providers=["CPUExecutionProvider"],
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
            tick.advance()
        return used

    def _qat(self, model: TorchModel, spec: QuantizeSpec, ctx: StageContext) -> None:
        module = model.module
        weighted = [
            (name, m)
            for name, m in module.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        ]
        if not weighted:
            raise ctx.error("the model has no Conv or Linear layer to quantize")
        keep = set()
        for name in spec.keep_float:
            if name == "first":
                keep.add(weighted[0][0])
            elif name == "last":
                keep.add(weighted[-1][0])
            elif name in dict(weighted):
                keep.add(name)
            else:
                raise ctx.error(
                    f"keep_float: unknown layer {name!r}; quantizable layers: "
                    f"{', '.join(n for n, _ in weighted)}",
                    hint="use 'first', 'last' or a torch module path",
                )
        targets = [(n, m) for n, m in weighted if n not in keep]
        hooks = []
        for _, layer in targets:
            parametrize.register_parametrization(layer, "weight", _FakeQuantWeight())
            hooks.append(layer.register_forward_pre_hook(_FakeQuantInput()))
        try:
            ctx.fit(
                module,
                description="quantization-aware training",
                purpose="qat",
                epochs=spec.qat_epochs,
                lr=spec.lr,
                batch_size=spec.batch_size,
            )
        finally:
            for hook in hooks:
                hook.remove()
            for _, layer in targets:
                # Keep the weights on the int8 grid they were trained on.
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        ctx.record(qat_layers=[n for n, _ in targets], qat_params=models.parameter_count(module))


class _FakeQuantWeight(nn.Module):
    """Symmetric per-output-channel int8 fake quantization of a weight."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        absmax = weight.detach().abs().flatten(1).amax(dim=1).clamp(min=1e-8)
        scale = (absmax / 127).to(torch.float32)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


class _FakeQuantInput:
    """Asymmetric per-tensor uint8 fake quantization of a layer's input, running min/max."""

    def __init__(self) -> None:
        self.low = 0.0
        self.high = 0.0

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
        (x, *rest) = inputs
        if module.training:
            self.low = min(self.low, float(x.detach().min()))
            self.high = max(self.high, float(x.detach().max()))
        scale = max(self.high - self.low, 1e-8) / 255
        zero = round(-self.low / scale)
        return (torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255), *rest)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
