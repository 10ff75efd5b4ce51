"""Inputs (issue 22), group 'code': what runs is what was signed.

- A package planted beside a validly signed recipe under the name of an installed one (the
  digits example's own dependencies: `sklearn/`, `numpy/`, `torch/`…), its `__init__.py` writing
  a marker: `recipe validate`, `recipe explain`, `recipe verify` (and one `run`) exit 0 and the
  marker is never written: the folder is never on the import path.
- Each file a signature covers, swapped after signing (the lock, a checkpoint, a local loader
  module, an ONNX baseline and its external data): `recipe verify` and `run` exit 3 naming the
  file, one line, nothing written.
- Deserialising entry points (`torch.load`, `numpy.load`, `joblib.load`, `yaml.unsafe_load`…)
  named as a factory or a loader in a package the trust file allows: exit 2, nothing written.
- A loader module beside the recipe that writes a marker when imported: `recipe validate` and
  `recipe explain` leave no marker (they run no code of the recipe's).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import allow_modules, load_trust
from compressgate.registry.kernel.keys import load_private_key

from .common import (
    TINY,
    Bench,
    Figure,
    Options,
    Outcome,
    cg,
    footprint,
    invoke,
    make_bench,
    sign_bytes,
)

SECTION = "inputs"

PLANTED = """\
from pathlib import Path
Path({marker!r}).write_text("the planted {name} ran")
"""
# The digits example's own dependencies and ours: what a planted folder would shadow.
SHADOWED = (
    "sklearn",
    "numpy",
    "torch",
    "scipy",
    "yaml",
    "onnx",
    "onnxruntime",
    "pydantic",
    "compressgate",
    "click",
)
LOADER = """\
from pathlib import Path
Path({marker!r}).write_text("the loader module was imported")
from compressgate.recipes.examples.digits import load as _load


def load(seed, **kwargs):
    return _load(seed, **kwargs)
"""
DESERIALISING = (
    ("torch", "torch:load"),
    ("torch", "torch.serialization:load"),
    ("numpy", "numpy:load"),
    ("numpy", "numpy:fromfile"),
    ("joblib", "joblib:load"),
    ("joblib", "joblib.numpy_pickle:load"),
    ("yaml", "yaml:unsafe_load"),
    ("yaml", "yaml:load"),
    ("yaml", "yaml:full_load"),
    ("onnx", "onnx:load_model_from_string"),
)


class Tally:
    def __init__(self) -> None:
        self.tried = 0
        self.held = 0
        self.misses: list[str] = []
        self.codes: dict[int, int] = {}

    def check(self, name: str, outcome: Outcome, problem: str) -> None:
        self.tried += 1
        self.codes[outcome.code] = self.codes.get(outcome.code, 0) + 1
        if "Traceback" in outcome.stdout + outcome.stderr:
            problem = problem or "a traceback"
        if problem:
            self.misses.append(f"{name}: {problem}")
        else:
            self.held += 1

    def figure(self, name: str, extra: str = "") -> Figure:
        codes = ", ".join(f"exit {c} ×{n}" for c, n in sorted(self.codes.items()))
        detail = "; ".join(p for p in (codes, extra, *(self.misses[:1])) if p)
        return Figure(SECTION, name, self.tried, self.held, detail)


def _refused(outcome: Outcome, code: int, says: str) -> str:
    if outcome.code != code:
        return f"exit {outcome.code}, not {code}: {outcome.stderr.strip()[-300:]}"
    if not outcome.clean:
        return f"not one clean line: {outcome.stderr.strip()[-300:]}"
    if says not in outcome.stderr:
        return f"message lacks {says!r}: {outcome.stderr.strip()[-300:]}"
    return ""


def _unaffected(outcome: Outcome) -> str:
    """'' when the command went on as if nothing were planted (exit 0), or refused the recipe
    cleanly because a module it names is shadowed by the planted folder (exit 2, naming it:
    `compressgate/` beside a recipe naming `compressgate.recipes.examples`)."""
    if outcome.code == 0:
        return ""
    lines = outcome.message_lines  # validation reports each reference it refuses: one line each
    if (
        outcome.code == 2
        and lines
        and "Traceback" not in outcome.stdout + outcome.stderr
        and all("has the name of an installed module" in line for line in lines)
    ):
        return ""
    return f"exit {outcome.code}: {outcome.stderr.strip()[-300:]}"


def figures(options: Options) -> list[Figure]:
    bench = make_bench(options.folder / "code")
    return [
        _shadowing(bench, options),
        _swapped(bench, options),
        _deserialising(bench, options),
        _no_code_at_validate(bench),
    ]


def _shadowing(bench: Bench, options: Options) -> Figure:
    tally = Tally()
    recipe = bench.recipe("shadowed")
    marker = bench.root / "PLANTED"
    names = SHADOWED[: options.count(len(SHADOWED), least=3)]
    for name in names:
        folder = bench.root / name
        folder.mkdir()
        (folder / "__init__.py").write_text(PLANTED.format(marker=str(marker), name=name))
        for command in (
            ("recipe", "validate", recipe),
            ("recipe", "explain", recipe),
            ("recipe", "verify", recipe, "--trust", bench.trust),
        ):
            outcome = cg(*command)
            problem = _unaffected(outcome)
            if marker.exists():
                problem = f"the planted {name} ran"
                marker.unlink()
            tally.check(f"{command[1]} beside {name}/", outcome, problem)
        if name == "sklearn":  # the digits loader imports scikit-learn: a run, too
            outcome = cg("run", recipe, "--workspace", bench.workspace)
            problem = _unaffected(outcome)
            if marker.exists():
                problem = "the planted sklearn ran in a run"
                marker.unlink()
            tally.check("run beside sklearn/", outcome, problem)
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()
    return tally.figure(
        "a package planted beside a signed recipe never runs (validate, explain, verify, run)",
        f"{len(names)} installed names planted; a recipe naming the shadowed one refused (exit 2)",
    )


def _swap_recipe(bench: Bench, folder: Path) -> Path:
    """TINY from a checkpoint, with its loader in a module beside it, signed."""
    import torch

    from compressgate.recipes.examples.digits import build_cnn

    folder.mkdir()
    for name in ("requirements.lock",):
        (folder / name).write_bytes((bench.root / name).read_bytes())
    (folder / "trust.yaml").write_bytes(bench.trust.read_bytes())
    allow_modules(folder / "trust.yaml", ("swapdata",))
    torch.manual_seed(0)
    torch.save(build_cnn(channels=[4, 8], hidden=16).state_dict(), folder / "weights.pt")
    (folder / "swapdata.py").write_text(LOADER.format(marker=str(folder / "LOADED")))
    text = (
        TINY.replace("NAME", "swapped")
        .replace("SEED", "0")
        .replace("  train: {epochs: 1, lr: 0.003}\n", "  checkpoint: weights.pt\n")
        .replace("compressgate.recipes.examples.digits:load", "swapdata:load")
    )
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    key = load_private_key(bench.key("ml-platform"))
    sign_recipe(path, key, load_trust(folder / "trust.yaml"))
    return path


def _onnx_recipe(bench: Bench, folder: Path) -> Path:
    """A recipe whose baseline is an ONNX file keeping its weights in `model.onnx.data`."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir()
    (folder / "requirements.lock").write_bytes((bench.root / "requirements.lock").read_bytes())
    (folder / "trust.yaml").write_bytes(bench.trust.read_bytes())
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32), "weight"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["logits"])],
        "baseline",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save_model(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    text = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: onnx-swapped, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock, strict: true}
model:
  onnx: model.onnx
data:
  loader: compressgate.recipes.examples.digits:load
seeds: [0]
stages:
  - {name: int8, kind: quantize, method: dynamic}
evaluators:
  - kind: accuracy
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.05}
"""
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    key = load_private_key(bench.key("ml-platform"))
    sign_recipe(path, key, load_trust(folder / "trust.yaml"))
    return path


def _swapped(bench: Bench, options: Options) -> Figure:
    tally = Tally()
    recipes = {
        "requirements.lock": _swap_recipe(bench, bench.root / "swap"),
        "model.onnx": _onnx_recipe(bench, bench.root / "swap-onnx"),
    }
    cases: list[tuple[Path, str, Callable[[bytes], bytes]]] = []
    swap, onnx_recipe = recipes["requirements.lock"], recipes["model.onnx"]
    for name in ("requirements.lock", "weights.pt", "swapdata.py"):
        cases.append((swap, name, lambda data: data + b"\n"))
        cases.append((swap, name, lambda data: data[:-1] + bytes([data[-1] ^ 1])))
    for name in ("model.onnx", "model.onnx.data"):
        cases.append((onnx_recipe, name, lambda data: data[:-1] + bytes([data[-1] ^ 1])))
        cases.append((onnx_recipe, name, lambda data: data + b"\0"))
    if options.scale < 1:  # one change of each file
        cases = cases[::2]
    workspace = bench.root / "swap-ws"
    for recipe, name, change in cases:
        target = recipe.parent / name
        original = target.read_bytes()
        target.write_bytes(change(original))
        before = footprint(workspace, [recipe.parent])
        try:
            for command in (
                ("recipe", "verify", recipe),
                ("run", recipe, "--workspace", workspace),
            ):
                outcome = invoke(*command)  # in this process: refused before anything loads
                problem = _refused(outcome, 3, f"{name} changed since it was signed")
                if footprint(workspace, [recipe.parent]) != before:
                    problem = problem or "something was written"
                if (recipe.parent / "LOADED").exists():
                    problem = problem or "the swapped loader module ran"
                tally.check(f"{command[0]} with {name} swapped", outcome, problem)
        finally:
            target.write_bytes(original)
    # Unswapped, both verify: what was refused was the swap.
    controls = [cg("recipe", "verify", recipe) for recipe in recipes.values()]
    held = sum(outcome.code == 0 for outcome in controls)
    return tally.figure(
        "each signed subject swapped (lock, checkpoint, local module, ONNX, its data): exit 3",
        f"the unswapped recipes verify: {held}/{len(controls)}",
    )


def _deserialising(bench: Bench, options: Options) -> Figure:
    tally = Tally()
    allow_modules(bench.trust, tuple(sorted({top for top, _ in DESERIALISING})))
    cases = DESERIALISING[: options.count(len(DESERIALISING), least=4)]
    base = TINY.replace("SEED", "0")
    before = footprint(bench.workspace)
    for index, (_, ref) in enumerate(cases):
        for field, old in (
            ("factory", "compressgate.recipes.examples.digits:build_cnn"),
            ("loader", "compressgate.recipes.examples.digits:load"),
        ):
            name = f"deser-{index}-{field}"
            text = base.replace("NAME", name).replace(old, ref)
            path = bench.root / f"{name}.yaml"
            path.write_text(text, encoding="utf-8")
            sign_bytes(bench, path, name)  # signed as it is: what is refused is the reference
            for command in (
                ("recipe", "validate", path),
                ("run", path, "--workspace", bench.workspace),
            ):
                outcome = invoke(*command)
                problem = _refused(outcome, 2, "deserialising entry point")
                if footprint(bench.workspace) != before:
                    problem = problem or "something was written"
                tally.check(f"{command[0]} {field} {ref}", outcome, problem)
    return tally.figure(
        "deserialising entry points as factory or loader, package allow-listed: exit 2",
        f"{len(cases)} entry points",
    )


def _no_code_at_validate(bench: Bench) -> Figure:
    tally = Tally()
    folder = bench.root / "marker"
    folder.mkdir()
    (folder / "requirements.lock").write_bytes((bench.root / "requirements.lock").read_bytes())
    (folder / "trust.yaml").write_bytes(bench.trust.read_bytes())
    allow_modules(folder / "trust.yaml", ("markerdata",))
    marker = folder / "IMPORTED"
    (folder / "markerdata.py").write_text(LOADER.format(marker=str(marker)))
    text = (
        TINY.replace("NAME", "marker")
        .replace("SEED", "0")
        .replace("compressgate.recipes.examples.digits:load", "markerdata:load")
    )
    path = folder / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    for command in (
        ("recipe", "validate", path),
        ("recipe", "validate", "--json", path),
        ("recipe", "explain", path),
        ("recipe", "explain", "--json", path),
    ):
        outcome = cg(*command)
        problem = "" if outcome.code == 0 else f"exit {outcome.code}: {outcome.stderr[-300:]}"
        if marker.exists():
            problem = "the loader's module was imported"
            marker.unlink()
        tally.check(" ".join(map(str, command[:3])), outcome, problem)
    # The control: asking for the power check runs the loader, so the marker can appear.
    control = cg("recipe", "explain", "--power", path)
    ran = control.code == 0 and marker.exists()
    tally.check("control: explain --power", control, "" if ran else "the control left no marker")
    return tally.figure(
        "recipe validate / explain import no module of the recipe's (a marker test)",
        "the control, `explain --power`, imported it" if ran else "",
    )
