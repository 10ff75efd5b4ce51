"""A small, fast digits recipe (distill, prune, int8, export; three epochs) that many tests run
through `compressgate run`, and the helpers to write it, run it and read what it recorded."""

from __future__ import annotations

import json
from pathlib import Path

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import load_trust
from compressgate.registry.kernel.keys import load_private_key
from tests.helpers.workspace import Invoke, Workspace

QUICK = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: digits-quick, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock, strict: true}
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  args: {channels: [8, 16], hidden: 32}
  train: {epochs: 3, lr: 0.003}
data:
  loader: compressgate.recipes.examples.digits:load
  args: {calibration_fraction: CALIBRATION}
seeds: [0]
stages:
  - name: distill
    kind: distill
    student: {factory: STUDENT_FACTORY, args: STUDENT_ARGS}
    epochs: DISTILL_EPOCHS
    lr: 0.003
  - name: prune
    kind: prune
    method: structured
    scope: layer
    sparsity: 0.5
    rounds: 2
    finetune_epochs: PRUNE_EPOCHS
    skip: SKIP
  - name: int8
    kind: quantize
    method: static
    calibration_samples: 64
  - name: export
    kind: export
"""

DEFAULTS = {
    "CALIBRATION": "0.15",
    "STUDENT_FACTORY": "compressgate.recipes.examples.digits:build_student",
    "STUDENT_ARGS": "{channels: [6, 12], hidden: 24}",
    "DISTILL_EPOCHS": "4",
    "PRUNE_EPOCHS": "1",
    "SKIP": "[]",
}


def write_recipe(ws: Workspace, **changes: str) -> Path:
    """QUICK with DEFAULTS (and `changes` over them) as the workspace's recipe, signed by
    ml-platform."""
    text = QUICK
    for key, value in {**DEFAULTS, **changes}.items():
        text = text.replace(key, value)
    ws.recipe.write_text(text)
    sign_recipe(ws.recipe, load_private_key(ws.key("ml-platform")), load_trust(ws.trust))
    return ws.recipe


def exported(cli: Invoke, ws: Workspace, run_id: str) -> dict:  # type: ignore[type-arg]
    """A run's full record, as `catalog show RUN --json` exports it."""
    result = cli("catalog", "show", run_id, "--workspace", ws.root / ".cg", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def run(cli: Invoke, ws: Workspace, *extra: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    """`compressgate run` of the workspace's recipe: exit code, its JSON summary ({} unless
    exit 0 or 1), stderr."""
    result = cli("run", ws.recipe, "--workspace", ws.root / ".cg", "--json", *extra)
    summary = json.loads(result.stdout) if result.exit_code in (0, 1) else {}
    return result.exit_code, summary, result.stderr


def digests(summary: dict) -> list[tuple[int, str, str]]:  # type: ignore[type-arg]
    """(seed, stage, artifact digest) of every stage a run summary lists."""
    return [(s["seed"], s["name"], s["artifact_sha256"]) for s in summary["stages"]]
