"""Malformed manifests: each exits 2 with exactly one line naming file:line and field, no
traceback, and nothing written. The base manifest is valid; each case breaks one thing."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.workspace import Invoke, Workspace

BASE = """\
apiVersion: compressgate/v1
kind: Recipe
metadata:
  name: digits-cnn-compact
  version: 1
  owners: [ml-platform]
  description: test recipe
environment:
  lock: requirements.lock
  strict: true
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  train: {epochs: 2}
data:
  loader: compressgate.recipes.examples.digits:load
seeds: [0, 1]
stages:
  - name: distill
    kind: distill
    student: {factory: compressgate.recipes.examples.digits:build_student}
    temperature: 4
  - name: prune
    kind: prune
    method: structured
    sparsity: 0.5
  - name: int8
    kind: quantize
    method: static
    calibration_samples: 256
    keep_float: [first, last]
  - name: export
    kind: export
gates:
  - name: accuracy
    owner: ml-lead
    after: int8
    metric: accuracy
    rule: non_inferior
    margin: 0.02
"""


@dataclass(frozen=True)
class Case:
    id: str
    edit: Callable[[str], str]
    line: int
    field: str  # the field path printed after file:line ("" for YAML syntax errors)
    says: str  # a fragment of the message


def sub(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} must occur once in the base manifest"
        return text.replace(old, new)

    return edit


def with_evaluators(*specs: str) -> Callable[[str], str]:
    """Declare evaluators (one per line, from line 34) just before the gates."""
    block = "evaluators:\n" + "".join(f"  - {spec}\n" for spec in specs)
    return sub("gates:\n", block + "gates:\n")


CASES = [
    Case(
        "unknown-stage-kind",
        sub("kind: quantize", "kind: qantize"),
        27,
        "stages[2].kind",
        "unknown kind 'qantize'; known: distill, prune, quantize, export",
    ),
    Case(
        "misspelt-required-key",
        sub("sparsity: 0.5", "sparsty: 0.5"),
        25,
        "stages[1].sparsty",
        "did you mean 'sparsity'?",
    ),
    Case(
        "misspelt-optional-key",
        sub("temperature: 4", "temprature: 4"),
        21,
        "stages[0].temprature",
        "did you mean 'temperature'?",
    ),
    Case(
        "misspelt-top-level-key",
        sub("seeds: [0, 1]", "seed: [0, 1]"),
        16,
        "seed",
        "did you mean 'seeds'?",
    ),
    Case(
        "sparsity-too-high",
        sub("sparsity: 0.5", "sparsity: 1.5"),
        25,
        "stages[1].sparsity",
        "must be < 1",
    ),
    Case(
        "sparsity-zero",
        sub("sparsity: 0.5", "sparsity: 0"),
        25,
        "stages[1].sparsity",
        "must be > 0",
    ),
    Case(
        "calibration-zero-samples",
        sub("calibration_samples: 256", "calibration_samples: 0"),
        29,
        "stages[2].calibration_samples",
        "must be >= 1",
    ),
    Case(
        "negative-temperature",
        sub("temperature: 4", "temperature: -1"),
        21,
        "stages[0].temperature",
        "must be > 0",
    ),
    Case(
        "alpha-above-one",
        sub("temperature: 4", "temperature: 4\n    alpha: 1.5"),
        22,
        "stages[0].alpha",
        "must be <= 1",
    ),
    Case("margin-zero", sub("margin: 0.02", "margin: 0"), 39, "gates[0].margin", "must be > 0"),
    Case("version-zero", sub("version: 1", "version: 0"), 5, "metadata.version", "must be >= 1"),
    Case(
        "version-not-integer",
        sub("version: 1", "version: one"),
        5,
        "metadata.version",
        "must be an integer, not 'one'",
    ),
    Case(
        "float-for-integer",
        sub("calibration_samples: 256", "calibration_samples: 2.5"),
        29,
        "stages[2].calibration_samples",
        "must be an integer",
    ),
    Case(
        "quoted-number",
        sub("sparsity: 0.5", "sparsity: '0.5'"),
        25,
        "stages[1].sparsity",
        "must be a number, not '0.5'",
    ),
    Case(
        "boolean-for-number",
        sub("sparsity: 0.5", "sparsity: yes"),
        25,
        "stages[1].sparsity",
        "must be a number, not true",
    ),
    Case("seeds-not-a-list", sub("seeds: [0, 1]", "seeds: zero"), 16, "seeds", "must be a list"),
    Case(
        "keep-float-not-a-list",
        sub("keep_float: [first, last]", "keep_float: first"),
        30,
        "stages[2].keep_float",
        "must be a list",
    ),
    Case("negative-seed", sub("seeds: [0, 1]", "seeds: [0, -1]"), 16, "seeds[1]", "must be >= 0"),
    Case(
        "duplicate-owner",
        sub("owners: [ml-platform]", "owners: [ml-platform, ml-platform]"),
        6,
        "metadata.owners[1]",
        "owner 'ml-platform' is listed twice",
    ),
    Case(
        "duplicate-seed",
        sub("seeds: [0, 1]", "seeds: [1, 1]"),
        16,
        "seeds[1]",
        "seed 1 is listed twice",
    ),
    Case(
        "unknown-prune-method",
        sub("method: structured", "method: structural"),
        24,
        "stages[1].method",
        "did you mean 'structured'?",
    ),
    Case(
        "unknown-gate-rule",
        sub("rule: non_inferior", "rule: noninferior"),
        38,
        "gates[0].rule",
        "unknown rule 'noninferior'",
    ),
    Case(
        "bound-gate-without-bound",
        sub("rule: non_inferior\n    margin: 0.02", "rule: bound"),
        34,
        "gates[0]",
        "give 'max', 'min' or both",
    ),
    Case(
        "broken-yaml-bracket",
        sub("owners: [ml-platform]", "owners: [ml-platform"),
        7,
        "",
        "invalid YAML",
    ),
    Case(
        "broken-yaml-indentation", sub("  strict: true", "   strict: true"), 10, "", "invalid YAML"
    ),
    Case("tab-indentation", sub("  strict: true", "\tstrict: true"), 10, "", "invalid YAML"),
    Case(
        "duplicate-key",
        sub("version: 1", "version: 1\n  version: 2"),
        6,
        "metadata.version",
        "duplicate key",
    ),
    Case(
        "python-tag-refused",
        sub("description: test recipe", "description: !!python/object/apply:os.system [echo hi]"),
        7,
        "",
        "invalid YAML",
    ),
    Case(
        "missing-referenced-file",
        sub("lock: requirements.lock", "lock: missing.lock"),
        9,
        "environment.lock",
        "file 'missing.lock' not found",
    ),
    Case(
        "path-escaping-folder",
        sub("lock: requirements.lock", "lock: ../requirements.lock"),
        9,
        "environment.lock",
        "escapes the manifest's folder",
    ),
    Case(
        "absolute-path",
        sub("lock: requirements.lock", "lock: /etc/hostname"),
        9,
        "environment.lock",
        "must be a relative path",
    ),
    Case(
        "symlink-escaping-folder",
        sub("lock: requirements.lock", "lock: outside.lock"),
        9,
        "environment.lock",
        "resolves outside the manifest's folder",
    ),
    Case(
        "missing-checkpoint",
        sub("build_cnn\n", "build_cnn\n  checkpoint: weights.pt\n"),
        13,
        "model.checkpoint",
        "file 'weights.pt' not found",
    ),
    Case(
        "factory-and-onnx",
        sub("build_cnn\n", "build_cnn\n  onnx: requirements.lock\n"),
        11,
        "model",
        "give exactly one of 'factory' or 'onnx'",
    ),
    Case(
        "factory-without-colon",
        sub("factory: compressgate.recipes.examples.digits:build_cnn", "factory: build_cnn"),
        12,
        "model.factory",
        "must have the form 'package.module:function'",
    ),
    Case(
        "factory-module-not-found",
        sub(
            "factory: compressgate.recipes.examples.digits:build_cnn",
            "factory: compressgate.recipes.examples.nosuch:build",
        ),
        12,
        "model.factory",
        "module 'compressgate.recipes.examples.nosuch' not found",
    ),
    Case(
        "factory-module-not-allow-listed",
        sub("factory: compressgate.recipes.examples.digits:build_cnn", "factory: os:system"),
        12,
        "model.factory",
        "module 'os' is not allow-listed in the trust file "
        "(allowed: compressgate.recipes.examples)",
    ),
    Case(
        "duplicate-stage-names",
        sub("  - name: prune", "  - name: distill"),
        22,
        "stages[1].name",
        "duplicate stage name 'distill'",
    ),
    Case(
        "gate-after-no-stage",
        sub("after: int8", "after: int4"),
        36,
        "gates[0].after",
        "no stage is named 'int4'",
    ),
    Case(
        "gate-owner-not-in-trust",
        sub("owner: ml-lead", "owner: ml-intern"),
        35,
        "gates[0].owner",
        "owner 'ml-intern' is not in the trust file",
    ),
    Case(
        "recipe-owner-not-in-trust",
        sub("owners: [ml-platform]", "owners: [ml-ops]"),
        6,
        "metadata.owners[0]",
        "owner 'ml-ops' is not in the trust file",
    ),
    Case(
        "empty-stages",
        lambda t: t[: t.index("stages:")] + "stages: []\n" + t[t.index("gates:") :],
        17,
        "stages",
        "must not be empty",
    ),
    Case(
        "missing-section",
        sub("data:\n  loader: compressgate.recipes.examples.digits:load\n", ""),
        1,
        "data",
        "required, but missing",
    ),
    Case("unknown-top-level-key", lambda t: t + "extras: 1\n", 40, "extras", "unknown key"),
    Case(
        "wrong-api-version",
        sub("compressgate/v1", "compressgate/v2"),
        1,
        "apiVersion",
        "'compressgate/v2' is not allowed",
    ),
    Case(
        "invalid-recipe-name",
        sub("name: digits-cnn-compact", "name: Digits_CNN"),
        4,
        "metadata.name",
        "lowercase letters, digits and '-'",
    ),
    Case(
        "stage-without-name",
        sub("  - name: export\n    kind: export", "  - kind: export"),
        31,
        "stages[3].name",
        "required, but missing",
    ),
    Case(
        "student-without-factory",
        sub(
            "student: {factory: compressgate.recipes.examples.digits:build_student}", "student: {}"
        ),
        20,
        "stages[0].student.factory",
        "required, but missing",
    ),
    Case(
        "yaml-boolean-key",
        sub("margin: 0.02", "margin: 0.02\n    on: estimate"),
        40,
        "gates[0].true",
        "YAML reads unquoted on/off/yes/no as booleans",
    ),
    Case("document-not-a-mapping", lambda t: "- a\n- b\n", 1, "", "must be a mapping"),
    Case("empty-document", lambda t: "", 1, "", "the document is empty"),
    Case("two-documents", lambda t: t + "---\nkind: Recipe\n", 41, "", "one YAML document"),
    # Evaluators and the metrics gates may judge.
    Case(
        "gate-metric-of-an-undeclared-evaluator",
        sub("metric: accuracy", "metric: latency.speedup_p50"),
        37,
        "gates[0].metric",
        "comes from the 'latency' evaluator, which the recipe does not declare",
    ),
    Case(
        "gate-metric-misspelt",
        sub("metric: accuracy", "metric: acuracy"),
        37,
        "gates[0].metric",
        "no evaluator gives the metric 'acuracy'; did you mean 'accuracy'?",
    ),
    Case(
        "memory-gate-after-a-torch-stage",
        lambda text: with_evaluators("{kind: size}")(
            sub("after: int8", "after: prune")(
                sub("metric: accuracy", "metric: size.peak_memory_bytes")(text)
            )
        ),
        39,
        "gates[0].metric",
        "measured on ONNX variants only, and stage 'prune' is torch",
    ),
    Case(
        "evaluator-declared-twice",
        with_evaluators("{kind: calibration}", "{kind: calibration, bins: 10}"),
        35,
        "evaluators[1].kind",
        "evaluator 'calibration' is declared twice (first at evaluators[0])",
    ),
    Case(
        "unknown-evaluator-kind",
        with_evaluators("{kind: calibraton}"),
        34,
        "evaluators[0].kind",
        "unknown kind 'calibraton'",
    ),
    Case(
        "misspelt-evaluator-option",
        with_evaluators("{kind: latency, batchsizes: [1]}"),
        34,
        "evaluators[0].batchsizes",
        "did you mean 'batch_sizes'?",
    ),
    Case(
        "calibration-with-one-bin",
        with_evaluators("{kind: calibration, bins: 1}"),
        34,
        "evaluators[0].bins",
        "must be >= 2",
    ),
    Case(
        "exemplars-with-one-seed",
        lambda text: with_evaluators("{kind: exemplars}")(sub("seeds: [0, 1]", "seeds: [0]")(text)),
        34,
        "evaluators[0].kind",
        "needs at least two seeds (the recipe has 1)",
    ),
    Case(
        "torch-latency-runner-after-onnx-stages",
        with_evaluators("{kind: latency, runner: torch}"),
        34,
        "evaluators[0].runner",
        "the torch runner cannot time ONNX variants (stage 'int8' makes ONNX)",
    ),
    Case(
        "occlusion-of-the-whole-input",
        with_evaluators("{kind: robustness, shifts: [{kind: occlusion, severities: [0.5, 1.5]}]}"),
        34,
        "evaluators[0].shifts[0]",
        "occlusion severities are fractions of the input: each must be < 1",
    ),
    Case(
        "bound-confidence-not-the-evaluators",
        sub(
            "rule: non_inferior\n    margin: 0.02",
            "rule: bound\n    min: 0.9\n    confidence: 0.99",
        ),
        40,
        "gates[0].confidence",
        "set 'confidence: 0.99' on that evaluator instead",
    ),
    Case(
        "mean-of-one-seed",
        lambda text: sub("seeds: [0, 1]", "seeds: [0]")(
            sub("margin: 0.02", "margin: 0.02\n    seeds: mean")(text)
        ),
        40,
        "gates[0].seeds",
        "needs at least two seeds (the recipe has 1)",
    ),
    Case(
        "robustness-without-shifts",
        with_evaluators("{kind: robustness, shifts: []}"),
        34,
        "evaluators[0].shifts",
        "must not be empty",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_manifest_gives_one_located_error(
    case: Case, workspace: Workspace, cli: Invoke
) -> None:
    (workspace.root.parent / "outside.lock").write_text("torch==2.13.0\n")
    (workspace.root / "outside.lock").symlink_to("../outside.lock")
    workspace.recipe.write_text(case.edit(BASE))
    before = sorted(p.name for p in workspace.root.rglob("*"))

    result = cli("recipe", "validate", workspace.recipe, "--trust", workspace.trust)

    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    where = re.escape(f"Error: {workspace.recipe}:{case.line}")
    field = f" {re.escape(case.field)}:" if case.field else ":"
    assert re.match(where + field, lines[0]), lines[0]
    assert case.says in lines[0]
    assert result.stdout == ""
    assert sorted(p.name for p in workspace.root.rglob("*")) == before


def test_base_manifest_is_valid(workspace: Workspace, cli: Invoke) -> None:
    workspace.recipe.write_text(BASE)
    result = cli("recipe", "validate", workspace.recipe, "--trust", workspace.trust)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"ok {workspace.recipe}")


def test_not_utf8_is_a_located_error(workspace: Workspace, cli: Invoke) -> None:
    workspace.recipe.write_bytes(BASE.encode() + b"\xff\xfe")
    result = cli("recipe", "validate", workspace.recipe)
    assert result.exit_code == 2
    offset = len(BASE.encode())
    assert result.stderr.splitlines() == [
        f"Error: {workspace.recipe}: not UTF-8 text (byte {offset})"
    ]


def test_every_problem_is_reported_in_line_order(workspace: Workspace, cli: Invoke) -> None:
    text = sub("after: int8", "after: int4")(sub("  - name: prune", "  - name: distill")(BASE))
    workspace.recipe.write_text(text)
    result = cli("recipe", "validate", workspace.recipe)
    assert result.exit_code == 2
    assert [line.split(" ")[1] for line in result.stderr.splitlines()] == [
        f"{workspace.recipe}:22",
        f"{workspace.recipe}:36",
    ]


def test_several_files_are_checked_and_the_bad_one_named(workspace: Workspace, cli: Invoke) -> None:
    workspace.recipe.write_text(BASE)
    bad = workspace.root / "bad.yaml"
    bad.write_text(sub("sparsity: 0.5", "sparsity: 2")(BASE))
    result = cli("recipe", "validate", workspace.recipe, bad)
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [f"ok {workspace.recipe} (digits-cnn-compact v1)"]
    assert result.stderr.startswith(f"Error: {bad}:25 stages[1].sparsity: must be < 1")


def test_terminal_escapes_in_user_text_are_shown_not_obeyed(
    workspace: Workspace, tmp_path: Path, cli: Invoke
) -> None:
    """A file name, or a value, holding an ANSI escape sequence or a bidi override reaches
    the error line as its escape (`\\x1b`, `\\u202e`), not as a command to the terminal."""
    hostile = tmp_path / "a\x1b[2J\u202eb.yaml"
    missing = cli("recipe", "validate", hostile)
    assert missing.exit_code == 4
    assert "\x1b" not in missing.stderr and "\u202e" not in missing.stderr
    assert "a\\x1b[2J\\u202eb.yaml not found" in missing.stderr
    lock = "lock: requirements.lock"
    assert lock in BASE
    workspace.recipe.write_text(BASE.replace(lock, 'lock: "req\\e[2J\\u202euirements.lock"'))
    bad = cli("recipe", "validate", workspace.recipe, "--trust", workspace.trust)
    assert bad.exit_code == 2
    assert "\x1b" not in bad.stderr and "\u202e" not in bad.stderr
    assert "file 'req\\x1b[2J\\u202euirements.lock' not found" in bad.stderr


def test_missing_manifest_is_not_found(tmp_path: Path, cli: Invoke) -> None:
    result = cli("recipe", "validate", tmp_path / "nope.yaml")
    assert result.exit_code == 4
    assert (
        result.stderr
        == f"Error: {tmp_path / 'nope.yaml'}: recipe {tmp_path / 'nope.yaml'} not found\n"
    )


def _validated(workspace: Workspace, cli: Invoke, text: str) -> str:
    workspace.recipe.write_text(text)
    result = cli("recipe", "validate", workspace.recipe, "--trust", workspace.trust)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return result.stderr


def test_aliases_of_a_long_value_are_refused_before_they_expand(
    workspace: Workspace, cli: Invoke
) -> None:
    """A value of 60,000 characters named 200 times by an alias: a 60 KB file that would
    expand to 12 MB of text (and take GBs through JSON and pydantic) is refused by the walk
    over its nodes, at the alias where the expanded text passes 4 MiB."""
    long = "x" * 60_000
    aliases = ", ".join(["*d"] * 200)
    text = BASE.replace("seeds: [0, 1]", f"seeds: [0, 1]\nnotes: [&d {long}, {aliases}]")
    said = _validated(workspace, cli, text)
    assert "more than 4,194,304 characters of values with its aliases (*name) expanded" in said


def test_a_manifest_over_1_mib_or_a_value_over_64_kib_is_refused(
    workspace: Workspace, cli: Invoke
) -> None:
    big = BASE + "# " + "padding " * 140_000 + "\n"  # a comment: nothing else is wrong
    said = _validated(workspace, cli, big)
    assert f"the file is {len(big.encode()):,} bytes, over the 1,048,576" in said
    described = BASE.replace("description: test recipe", "description: " + "d" * 70_000)
    assert described != BASE
    said = _validated(workspace, cli, described)
    assert "a value of 70,000 characters, over the 65,536 allowed" in said
