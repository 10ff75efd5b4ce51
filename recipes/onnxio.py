"""Torch → ONNX export and ONNX inference, shared by the quantize and export stages.

Export uses torch's own exporter (`torch.onnx.export(dynamo=True)`, which needs opset ≥ 18)
with a dynamic batch axis. The exporter stamps every node with metadata (Python stack traces
with absolute paths, FX node text); we read the module path of each node from it, then drop it
all, so the file depends on the model and not on where the virtual environment lives.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from compressgate.recipes.models import ONNX_DATA_FILE, ONNX_FILE, OnnxModel

INPUT_NAME = "x"
OUTPUT_NAME = "logits"
QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
_NAME_SCOPES = "pkg.torch.onnx.name_scopes"


@dataclass(frozen=True)
class LayerNode:
    """A weighted ONNX node and the torch module path it came from ('' if unknown)."""

    node: str
    op_type: str
    module: str


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch 2.13's exporter trips its own pytree deprecation; not ours to fix.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export(
    module: nn.Module,
    example: torch.Tensor,
    directory: Path,
    *,
    opset: int,
    external_data: bool = False,
) -> tuple[OnnxModel, tuple[LayerNode, ...]]:
    """Export `module` to `directory/model.onnx`; returns the model and its weighted layers."""
    directory.mkdir(parents=True, exist_ok=True)
    batch = example[:2] if len(example) >= 2 else torch.cat([example, example])
    module.eval()
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (batch,),
            None,
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    layers = _layers(proto)
    _strip_metadata(proto)
    save(proto, directory, external_data=external_data)
    return OnnxModel(directory), layers


def save(proto: onnx.ModelProto, directory: Path, *, external_data: bool) -> OnnxModel:
    """Write `model.onnx` (and `model.onnx.data` when weights go outside), deterministically."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (directory / ONNX_FILE, directory / ONNX_DATA_FILE):
        stale.unlink(missing_ok=True)
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # the caller's stays inline
    if external_data:
        from onnx.external_data_helper import convert_model_to_external_data

        convert_model_to_external_data(
            proto,
            all_tensors_to_one_file=True,
            location=ONNX_DATA_FILE,
            size_threshold=0,
            convert_attribute=False,
        )
        # Integer tensors are shapes and indices that shape inference must read: keep inline.
        for tensor in proto.graph.initializer:
            if tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
                del tensor.external_data[:]
                tensor.data_location = onnx.TensorProto.DEFAULT
    onnx.save_model(proto, str(directory / ONNX_FILE))
    return OnnxModel(directory)


def load(model: OnnxModel) -> onnx.ModelProto:
    return onnx.load(str(model.path), load_external_data=True)


def layers(model: OnnxModel) -> tuple[LayerNode, ...]:
    return _layers(onnx.load(str(model.path), load_external_data=False))


def _layers(proto: onnx.ModelProto) -> tuple[LayerNode, ...]:
    found = []
    for node in proto.graph.node:
        if node.op_type not in QUANTIZABLE_OPS:
            continue
        module = ""
        for prop in node.metadata_props:
            if prop.key == _NAME_SCOPES:
                # e.g. "['', 'features', '0', 'conv2d']": the module path, then the op.
                scopes = [s.strip(" '\"") for s in prop.value.strip("[]").split(",")]
                module = ".".join(s for s in scopes[1:-1] if s)
        found.append(LayerNode(node.name, node.op_type, module))
    return tuple(found)


def _strip_metadata(proto: onnx.ModelProto) -> None:
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    proto.graph.doc_string = ""
    proto.doc_string = ""
    del proto.metadata_props[:]


def session(model: OnnxModel | Path, threads: int = 1) -> object:
    """An onnxruntime CPU session with pinned thread counts."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    path = model.path if isinstance(model, OnnxModel) else model
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(model: OnnxModel | Path, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of an ONNX model on `x`, through onnxruntime."""
    sess = session(model)
    name = sess.get_inputs()[0].name  # type: ignore[attr-defined]
    array = x.numpy()
    outputs = [
        sess.run(None, {name: array[i : i + batch_size]})[0]  # type: ignore[attr-defined]
        for i in range(0, len(array), batch_size)
    ]
    return torch.from_numpy(np.concatenate(outputs)) if outputs else torch.empty(0)
