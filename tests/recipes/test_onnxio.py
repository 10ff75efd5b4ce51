"""An ONNX file a recipe names as its baseline (`model: {onnx: FILE}`) is checked as input
(`compressgate.recipes.onnxio.check_baseline`): bytes that are not a model, weights kept in a
file outside the model's folder (an absolute `location`, one climbing out, a link leading out),
an operator of a custom-op domain, a model the checker or onnxruntime refuses: each is bad
input (exit 2) on one line naming the file and the problem. The models are built with
`onnx.helper`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressgate.recipes.onnxio import check_baseline
from compressgate.registry.kernel.errors import ManifestError


def model(
    *,
    domain: str = "",
    location: str | None = None,
    ir_version: int = 10,
    constant_location: str | None = None,
) -> onnx.ModelProto:
    """logits = flatten(x) @ W + B over 8×8 inputs, 10 classes; the last node in `domain`."""
    weights = numpy_helper.from_array(np.ones((64, 10), np.float32), "W")
    if location is not None:
        external(weights, location)
    bias: list[onnx.TensorProto] = [numpy_helper.from_array(np.zeros(10, np.float32), "B")]
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["f", "W"], ["m"], name="matmul"),
    ]
    if constant_location is not None:
        value = numpy_helper.from_array(np.zeros(10, np.float32), "B")
        external(value, constant_location)
        nodes.append(helper.make_node("Constant", [], ["B"], value=value, name="bias"))
        bias = []
    op = ("Add", "") if not domain else ("Steal", domain)
    nodes.append(helper.make_node(op[0], ["m", "B"], ["logits"], domain=op[1], name="add"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weights, *bias],
    )
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)


def external(tensor: onnx.TensorProto, location: str) -> None:
    """Point `tensor`'s data at `location` (as a hostile file would), its bytes removed."""
    size = len(tensor.raw_data) or 40
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def refusal(path: Path) -> str:
    with pytest.raises(ManifestError) as caught:
        check_baseline(path, what="model.onnx")
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"model.onnx: {path}: ")
    return message


def saved(folder: Path, proto: onnx.ModelProto, name: str = "base.onnx") -> Path:
    path = folder / name
    path.write_bytes(proto.SerializeToString())
    return path


def test_a_standard_model_passes(tmp_path: Path) -> None:
    check_baseline(saved(tmp_path, model()), what="model.onnx")


def test_an_operator_of_a_custom_domain_is_refused(tmp_path: Path) -> None:
    message = refusal(saved(tmp_path, model(domain="evil.custom")))
    assert "node 'add' (Steal) is in operator domain 'evil.custom'" in message
    assert "needs a custom-op library" in message


def test_a_custom_operator_inside_a_subgraph_or_a_function_is_refused(tmp_path: Path) -> None:
    branch = helper.make_graph(
        [helper.make_node("Steal", ["x"], ["y"], domain="evil.custom", name="inner")],
        "branch",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    proto = model()
    proto.graph.node.append(
        helper.make_node("If", ["c"], ["z"], then_branch=branch, else_branch=branch, name="if")
    )
    assert "subgraph of node 'if': node 'inner' (Steal)" in refusal(saved(tmp_path, proto))
    function = helper.make_function(
        "local.fn", "Add2", ["a", "b"], ["c"],
        [helper.make_node("Steal", ["a", "b"], ["c"], domain="evil.custom", name="deep")],
        [helper.make_opsetid("", 18), helper.make_opsetid("evil.custom", 1)],
    )  # fmt: skip
    proto = model()
    proto.functions.append(function)
    proto.graph.node[-1].CopyFrom(
        helper.make_node("Add2", ["m", "B"], ["logits"], domain="local.fn", name="add")
    )
    proto.opset_import.append(helper.make_opsetid("local.fn", 1))
    assert "function 'Add2': node 'deep' (Steal)" in refusal(saved(tmp_path, proto, "fn.onnx"))


def test_a_function_the_model_defines_is_not_a_custom_operator(tmp_path: Path) -> None:
    function = helper.make_function(
        "local.fn", "Add2", ["a", "b"], ["c"],
        [helper.make_node("Add", ["a", "b"], ["c"])],
        [helper.make_opsetid("", 18)],
    )  # fmt: skip
    proto = model()
    proto.functions.append(function)
    proto.graph.node[-1].CopyFrom(
        helper.make_node("Add2", ["m", "B"], ["logits"], domain="local.fn", name="add")
    )
    proto.opset_import.append(helper.make_opsetid("local.fn", 1))
    check_baseline(saved(tmp_path, proto), what="model.onnx")


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("/etc/passwd", "tensor 'W' keeps its data at an absolute path, '/etc/passwd'"),
        ("../x.bin", "tensor 'W' keeps its data at '../x.bin', outside the model's folder"),
        ("a/../../x.bin", "keeps its data at 'a/../../x.bin', outside the model's folder"),
        ("C:\\Windows\\x", "keeps its data at an absolute path, 'C:\\\\Windows\\\\x'"),
        ("link.bin", "keeps its data at 'link.bin', a link to a file outside the model's folder"),
        ("missing.bin", "keeps its data at 'missing.bin', which is not a file beside the model"),
    ],
)
def test_weights_kept_outside_the_models_folder_are_refused_and_never_read(
    tmp_path: Path, location: str, problem: str
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "x.bin").write_bytes(np.ones((64, 10), np.float32).tobytes())
    (folder / "link.bin").symlink_to(tmp_path / "x.bin")
    message = refusal(saved(folder, model(location=location)))
    assert problem in message


def test_weights_in_a_file_beside_the_model_are_read_from_there(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(np.ones((64, 10), np.float32).tobytes())
    check_baseline(saved(tmp_path, model(location="w.bin")), what="model.onnx")


def test_a_constant_whose_value_is_kept_outside_is_refused(tmp_path: Path) -> None:
    message = refusal(saved(tmp_path, model(constant_location="/etc/shadow")))
    assert "tensor 'B' keeps its data at an absolute path, '/etc/shadow'" in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x08\x07garbage" * 10, "not an ONNX model: its 90 bytes do not parse as one"),
        (None, "do not parse as one (truncated?)"),  # the first 100 bytes of a model
        (b"", "not a valid ONNX model: The model does not have an ir_version set properly"),
    ],
)
def test_bytes_that_are_not_a_model_are_refused(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "base.onnx"
    path.write_bytes(model().SerializeToString()[:100] if content is None else content)
    assert problem in refusal(path)


def test_a_model_onnxruntime_cannot_load_is_refused_in_one_line(tmp_path: Path) -> None:
    """The checker leaves types to inference; onnxruntime refuses float + int64."""
    proto = model()
    proto.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.zeros(10, np.int64), "B"))
    message = refusal(saved(tmp_path, proto))
    assert "onnxruntime cannot load it: " in message and "Type Error" in message
    assert "onnxruntime_src" not in message and "[ONNXRuntimeError]" not in message
