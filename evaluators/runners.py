"""Turn a variant into predictions: torch in eval mode, or onnxruntime for ONNX variants."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from compressgate.recipes import onnxio, training
from compressgate.recipes.data import trim
from compressgate.recipes.models import TorchModel, Variant

if TYPE_CHECKING:
    from compressgate.recipes.data import Padding


def logits(model: Variant, x: torch.Tensor, padding: Padding | None = None) -> torch.Tensor:
    """The model's output on `x` (batched; no gradients). With `padding` (the splits declare
    it), batches of `onnxio.TRIMMED_BATCH_SIZE` rows, each trimmed to its longest sample."""
    if padding is None:
        if isinstance(model, TorchModel):
            return training.predict(model.module, x)
        return onnxio.run(model, x)
    if isinstance(model, TorchModel):
        size = onnxio.TRIMMED_BATCH_SIZE
        outputs = [
            training.predict(model.module, trim(x[i : i + size], padding))
            for i in range(0, len(x), size)
        ]
        return torch.cat(outputs) if outputs else torch.empty(0)
    return onnxio.run(model, x, onnxio.TRIMMED_BATCH_SIZE, padding=padding)
