"""Torch → ONNX export and ONNX inference, shared by the quantize and export stages.

Export uses torch's own exporter (`torch.onnx.export(dynamo=True)`, which needs opset ≥ 18)
with a dynamic batch axis, and a dynamic sequence axis as well when the data declares its
padding (`compressgate.recipes.data.Padding`): the model then takes batches trimmed to any length
up to the stored one, and `run` trims each batch it feeds. The exporter stamps every node with
metadata (Python stack traces with absolute paths, FX node text); we read the module path of
each node from it, then drop it all, so the file depends on the model and not on where the
virtual environment lives.

An ONNX file a recipe names as its baseline is input like any other: `check_baseline` refuses
one that is not a model onnxruntime runs as it is (bad input, exit 2), before a run records
anything.
"""

from __future__ import annotations

import ast
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from compressgate.recipes.data import Padding, trim
from compressgate.recipes.models import ONNX_DATA_FILE, ONNX_FILE, OnnxModel
from compressgate.registry.kernel.errors import ManifestError

INPUT_NAME = "x"
OUTPUT_NAME = "logits"
QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
_NAME_SCOPES = "pkg.torch.onnx.name_scopes"
# Operator domains onnxruntime's CPU provider implements itself (the ONNX standard, ONNX-ML and
# its own contrib operators); an operator of any other domain needs a custom-op library.
BUILT_IN_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
# Rows per batch when padded inputs are trimmed batch by batch: small enough that a batch's
# longest sample is near its typical one, large enough to keep the calls few.
TRIMMED_BATCH_SIZE = 64


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
    padding: Padding | None = None,
) -> tuple[OnnxModel, tuple[LayerNode, ...]]:
    """Export `module` to `directory/model.onnx`; returns the model and its weighted layers.

    The batch axis is dynamic; with `padding`, the padded axis too, from 1 to `example`'s length
    along it (the stored length: trimmed batches are never longer)."""
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
            dynamic_shapes=(dynamic_axes(batch, padding),),
            verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    layers = _layers(proto)
    _strip_metadata(proto)
    save(proto, directory, external_data=external_data)
    return OnnxModel(directory), layers


def dynamic_axes(example: torch.Tensor, padding: Padding | None) -> dict[int, torch.export.Dim]:
    """The exporter's dynamic axes of the input: the batch, and the padded axis when declared
    (unless the stored length is 1, which leaves nothing to trim)."""
    axes = {0: torch.export.Dim("batch")}
    if padding is not None:
        if example.dim() <= padding.axis:
            raise ValueError(
                f"the data declares padding along axis {padding.axis}, but its inputs have shape "
                f"{tuple(example.shape)}"
            )
        stored = int(example.shape[padding.axis])
        if stored > 1:
            axes[padding.axis] = torch.export.Dim("sequence", min=1, max=stored)
    return axes


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
                module = module_path(prop.value)
        found.append(LayerNode(node.name, node.op_type, module))
    return tuple(found)


_CALL_SUFFIX = re.compile(r"@\d+$")  # a module called more than once: "encoder.layer.0@1"


def module_path(name_scopes: str) -> str:
    """The torch module path of a node from the exporter's `name_scopes` stamp: the list of the
    enclosing modules' paths from the root (''), then the node's own name. Each path is the
    full one from the root ("['', 'encoder', 'encoder.encoder', 'encoder.encoder.layer.0',
    ..., 'linear']"), so the innermost is the answer; paths given one level at a time (each
    not extending the one before) are joined instead. '' when the stamp does not parse."""
    try:
        scopes = ast.literal_eval(name_scopes)
    except (SyntaxError, ValueError):
        return ""
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return ""
    paths = [_CALL_SUFFIX.sub("", s) for s in scopes[:-1] if s]
    if not paths:
        return ""
    if all(inner == outer or inner.startswith(outer + ".") for outer, inner in pairwise(paths)):
        return paths[-1]
    return ".".join(paths)


# Operators that hold int8 weights: onnxruntime's dynamic quantization writes the first four,
# its QOperator format the last two.
_INT8_WEIGHT_OPS = frozenset(
    {
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QLinearConv",
        "QLinearMatMul",
    }
)


def _constants(proto: onnx.ModelProto) -> set[str]:
    names = {t.name for t in proto.graph.initializer}
    names |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    return names


def weighted_layers(model: OnnxModel) -> tuple[LayerNode, ...]:
    """The layers of a float model that hold weights: Conv/Gemm/MatMul nodes one of whose inputs
    after the first is a constant (a product of two activations, such as attention's, holds
    none and no int8 scheme here quantizes it)."""
    proto = onnx.load(str(model.path), load_external_data=False)
    constants = _constants(proto)
    weighted = {n.name for n in proto.graph.node if any(i in constants for i in n.input[1:])}
    return tuple(layer for layer in _layers(proto) if layer.node in weighted)


def int8_layers(model: OnnxModel) -> int:
    """How many layers of a quantized model compute with int8 weights: the integer operators of
    dynamic quantization and of the QOperator format, and (QDQ format) each Conv/Gemm/MatMul
    with a weight that a DequantizeLinear reads from a constant."""
    proto = onnx.load(str(model.path), load_external_data=False)
    constants = _constants(proto)
    dequantized = {
        o
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and n.input and n.input[0] in constants
        for o in n.output
    }
    return sum(
        node.op_type in _INT8_WEIGHT_OPS
        or (node.op_type in QUANTIZABLE_OPS and any(i in dequantized for i in node.input[1:]))
        for node in proto.graph.node
    )


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


def run(
    model: OnnxModel | Path,
    x: torch.Tensor,
    batch_size: int = 1024,
    *,
    padding: Padding | None = None,
) -> torch.Tensor:
    """Logits of an ONNX model on `x`, through onnxruntime, `batch_size` rows a call.

    With `padding`, each batch is trimmed to its longest real sample first, when the model's
    padded axis is dynamic (a model exported at a fixed length gets the stored length)."""
    sess: Any = session(model)
    bound = sess.get_inputs()[0]
    array = x.numpy()
    batches = (array[i : i + batch_size] for i in range(0, len(array), batch_size))
    if padding is not None and not fixes_axis(bound.shape, padding.axis):
        cut = padding
        batches = (
            np.ascontiguousarray(trim(x[i : i + batch_size], cut).numpy())
            for i in range(0, len(array), batch_size)
        )
    outputs = [sess.run(None, {bound.name: batch})[0] for batch in batches]
    return torch.from_numpy(np.concatenate(outputs)) if outputs else torch.empty(0)


def fixes_axis(shape: list[object], axis: int) -> bool:
    """Whether an onnxruntime input `shape` fixes the length of `axis` (a number, not a name):
    a model exported without a dynamic sequence axis takes no trimmed batch."""
    return axis < len(shape) and isinstance(shape[axis], int)


# --- a baseline ONNX file, checked before a run records anything ------------------------------


def check_baseline(path: Path, *, what: str) -> None:
    """Refuse (ManifestError, exit 2) the ONNX file at `path` (the recipe's `what`, e.g.
    `model.onnx`) unless it is a model onnxruntime runs as it is: bytes that parse as an ONNX
    model; weights kept outside it (external data) only in files of the model's folder, links
    resolved (an absolute `location`, or one climbing out, would have the runtime read any
    file); every operator of a built-in domain or of a function the model defines (a custom-op
    domain such as `evil.custom` needs a library compressgate never loads); the ONNX checker
    satisfied; and an onnxruntime session made of it."""
    where = f"{what}: {path}"

    def refuse(problem: str, hint: str | None = None) -> ManifestError:
        return ManifestError(f"{where}: {problem}", hint=hint)

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from None
    try:
        proto = onnx.ModelProto.FromString(data)
    except Exception:  # protobuf's DecodeError, or a RuntimeWarning turned error
        raise refuse(
            f"not an ONNX model: its {len(data):,} bytes do not parse as one (truncated?)",
            hint="export the model again (torch.onnx.export, onnx.save)",
        ) from None
    for tensor, owner in _tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            problem = _external(tensor, owner, path.parent)
            if problem:
                raise refuse(problem, hint=_BESIDE)
    local = {(f.domain, f.name) for f in proto.functions}
    for node, owner in _nodes(proto):
        if node.domain not in BUILT_IN_DOMAINS and (node.domain, node.op_type) not in local:
            raise refuse(
                f"{owner}node '{node.name or node.op_type}' ({node.op_type}) is in operator "
                f"domain {node.domain!r}, which needs a custom-op library; built-in domains: "
                f"{', '.join(repr(d) for d in sorted(BUILT_IN_DOMAINS))}",
                hint="export the model with standard ONNX operators",
            )
    try:
        onnx.checker.check_model(str(path))  # its external data: relative to its folder
    except Exception as exc:  # onnx.checker.ValidationError, or its C++ errors
        raise refuse(f"not a valid ONNX model: {_first_line(str(exc))}") from None
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's Fail, InvalidGraph, NotImplemented, ...
        raise refuse(f"onnxruntime cannot load it: {_runtime_message(exc)}") from None


_BESIDE = (
    "save the weights inside the model (onnx.save(model, path)) or in a file beside it "
    "(save_as_external_data=True with a relative location)"
)


def _external(tensor: onnx.TensorProto, owner: str, folder: Path) -> str | None:
    """What is wrong with where `tensor` keeps its data (None: a file in `folder`)."""
    entries = {entry.key: entry.value for entry in tensor.external_data}
    location = entries.get("location", "")
    shown = ascii(location)  # as written, control characters escaped
    name = f"{owner}tensor '{tensor.name}'"
    if not location:
        return f"{name} keeps its data outside the file and names no location"
    if location.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", location):
        return f"{name} keeps its data at an absolute path, {shown}"
    depth = 0
    for part in re.split(r"[/\\]", location):
        depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
        if depth < 0:
            return f"{name} keeps its data at {shown}, outside the model's folder"
    root = folder.resolve()
    try:
        target = (folder / location).resolve()
    except (OSError, RuntimeError):  # a symbolic link loop
        return f"{name} keeps its data at {shown}, which cannot be resolved"
    if not target.is_relative_to(root):
        return f"{name} keeps its data at {shown}, a link to a file outside the model's folder"
    if not target.is_file():
        return f"{name} keeps its data at {shown}, which is not a file beside the model"
    return None


def _graphs(proto: onnx.ModelProto) -> list[tuple[onnx.GraphProto, str]]:
    """The main graph and every subgraph (of If, Loop, Scan), with how to name what they hold."""
    found: list[tuple[onnx.GraphProto, str]] = []
    pending = [(proto.graph, "")]
    while pending:
        graph, owner = pending.pop()
        found.append((graph, owner))
        for node in graph.node:
            for attribute in node.attribute:
                inner = [attribute.g] if attribute.HasField("g") else []
                for sub in [*inner, *attribute.graphs]:
                    pending.append((sub, f"{owner}subgraph of node '{node.name}': "))
    return found


def _nodes(proto: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    found = [(node, owner) for graph, owner in _graphs(proto) for node in graph.node]
    for function in proto.functions:
        found += [(node, f"function '{function.name}': ") for node in function.node]
    return found


def _tensors(proto: onnx.ModelProto) -> list[tuple[onnx.TensorProto, str]]:
    """Every tensor that may hold weights: initializers (dense and sparse) and tensor
    attributes (a Constant's value), in every graph and function."""
    found: list[tuple[onnx.TensorProto, str]] = []
    for graph, owner in _graphs(proto):
        found += [(t, owner) for t in graph.initializer]
        for sparse in graph.sparse_initializer:
            found += [(sparse.values, owner), (sparse.indices, owner)]
    for node, owner in _nodes(proto):
        for attribute in node.attribute:
            inner = [attribute.t] if attribute.HasField("t") else []
            sparse = [attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []
            found += [(t, owner) for t in [*inner, *attribute.tensors]]
            for s in [*sparse, *attribute.sparse_tensors]:
                found += [(s.values, owner), (s.indices, owner)]
    return found


def _first_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "no reason given"
    return line if len(line) <= limit else line[: limit - 1] + "…"


# onnxruntime's messages: "[ONNXRuntimeError] : 1 : FAIL : /src/.../model.cc:256 signature(...)
# Unsupported model IR version: 14, ...": what matters is after the source location.
_RUNTIME_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_SOURCE_LOCATION = re.compile(r"^(?:Load model from .*? failed:)?(?:\S+\.(?:cc|h|cpp):\d+ .*?\) )?")


def _runtime_message(exc: Exception) -> str:
    text = _RUNTIME_PREFIX.sub("", _first_line(str(exc), limit=10_000))
    return _first_line(_SOURCE_LOCATION.sub("", text)) if text else type(exc).__name__
