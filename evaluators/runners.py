"""Turn a variant into predictions: torch in eval mode, or onnxruntime for ONNX variants."""

from __future__ import annotations

import torch

from compressgate.recipes import onnxio, training
from compressgate.recipes.models import TorchModel, Variant


def logits(model: Variant, x: torch.Tensor) -> torch.Tensor:
    """The model's output on `x` (batched; no gradients)."""
    if isinstance(model, TorchModel):
        return training.predict(model.module, x)
    return onnxio.run(model, x)
