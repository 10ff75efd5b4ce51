"""ONNX export with a pinned opset, weights inline or as external data, parity checked.

A torch model is exported with torch's exporter and must agree with torch on the test split:
max |logit difference| ≤ `parity_atol`, else the stage fails (when the data declares its
padding, the export's padded axis is dynamic and it is checked on batches trimmed to their
longest sample). An incoming ONNX model (say, from a quantize stage) is brought to the pinned
opset and re-saved; the written file must give the incoming model's outputs exactly, and its
parity with the nearest float torch ancestor (max difference, top-1 agreement) is recorded: that
is the cost of quantization, not an error.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch

from compressgate.recipes import onnxio, training
from compressgate.recipes.manifest import ExportSpec
from compressgate.recipes.models import TorchModel, Variant
from compressgate.recipes.stages.base import STAGES, Stage, StageContext


@STAGES.register("export")
class Export(Stage[ExportSpec]):
    kind = "export"
    accepts = ("torch", "onnx")

    def apply(self, model: Variant, spec: ExportSpec, ctx: StageContext) -> Variant:
        out_dir = ctx.workdir / "out"
        x = ctx.splits.test.x if len(ctx.splits.test) else ctx.splits.train.x[:64]
        if isinstance(model, TorchModel):
            padding = ctx.splits.padding
            exported, _ = onnxio.export(
                model.module,
                x,
                out_dir,
                opset=spec.opset,
                external_data=spec.external_data,
                padding=padding,
            )
            reference = training.predict(model.module, x)
            # Padded data: the export runs on trimmed batches, against torch on the stored length.
            got = (
                onnxio.run(exported, x)
                if padding is None
                else onnxio.run(exported, x, onnxio.TRIMMED_BATCH_SIZE, padding=padding)
            )
            diff, agreement = _parity(reference, got)
            if diff > spec.parity_atol:
                raise ctx.error(
                    f"ONNX output differs from torch by up to {diff:.3g} on the test split "
                    f"(parity_atol {spec.parity_atol:g}); the export is not faithful",
                )
            ctx.record(
                opset=spec.opset,
                parity_reference="incoming torch model",
                parity_max_abs_diff=diff,
                parity_top1_agreement=agreement,
            )
            return exported
        proto = onnxio.load(model)
        current = _opset(proto)
        if current != spec.opset:
            try:
                proto = onnx.version_converter.convert_version(proto, spec.opset)
            except Exception as exc:
                raise ctx.error(
                    f"cannot convert the incoming ONNX model from opset {current} to "
                    f"{spec.opset}: {exc}",
                    hint=f"set export.opset to {current}",
                ) from exc
        exported = onnxio.save(proto, out_dir, external_data=spec.external_data)
        onnx.checker.check_model(str(exported.path))
        incoming = onnxio.run(model, x)
        got = onnxio.run(exported, x)
        same, _ = _parity(incoming, got)
        if same != 0.0:
            raise ctx.error(f"the re-saved model differs from the incoming one by {same:.3g}")
        details: dict[str, object] = {"opset": spec.opset, "converted_from_opset": current}
        if ctx.reference is not None:
            diff, agreement = _parity(training.predict(ctx.reference.module, x), got)
            details |= {
                "parity_reference": "nearest float torch ancestor",
                "parity_max_abs_diff": diff,
                "parity_top1_agreement": agreement,
            }
        ctx.record(**details)
        return exported


def _opset(proto: onnx.ModelProto) -> int:
    return int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))


def _parity(reference: torch.Tensor, got: torch.Tensor) -> tuple[float, float]:
    if reference.shape != got.shape:
        return float("inf"), 0.0
    diff = float((reference - got).abs().max()) if reference.numel() else 0.0
    agreement = float(np.mean((reference.argmax(1) == got.argmax(1)).numpy()))
    return round(diff, 9), round(agreement, 6)
