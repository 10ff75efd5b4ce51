"""A trial where its worker runs: it trusts only the trial's parameters, and a trial that cannot
see the driver's workspace (a Ray worker on another node) sends its artifacts back by digest."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.sweep import sign_sweep, verify_sweep
from compressgate.recipes.trust import load_trust
from compressgate.registry import Workspace as Api
from compressgate.registry.catalog.repository import Catalog, catalog_url
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.errors import IntegrityError
from compressgate.registry.kernel.keys import load_private_key
from compressgate.registry.run.sweep import SweepRun, _record, _task
from compressgate.registry.run.trial import receive_blobs, run_trial
from tests.helpers.recipes import DEFAULTS, QUICK
from tests.helpers.workspace import make_workspace

SWEEP = """\
apiVersion: compressgate/v1
kind: Sweep
metadata: {{name: one, version: 1, owners: [ml-platform]}}
recipe: {{path: recipe.yaml, sha256: {sha256}}}
axes:
  stages[prune].sparsity: [0.5]
objectives:
  - {{metric: size.bytes, stage: export, goal: minimize}}
"""


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One trial run by a worker that cannot see the driver's workspace."""
    folder = tmp_path_factory.mktemp("trial")
    ws = make_workspace(folder)
    text = QUICK
    for name, value in DEFAULTS.items():
        text = text.replace(name, value)
    ws.recipe.write_text(text + "evaluators:\n  - kind: accuracy\n  - kind: size\n")
    trust = load_trust(ws.trust)
    key = load_private_key(ws.key("ml-platform"))
    sign_recipe(ws.recipe, key, trust)
    sweep = ws.root / "sweep.yaml"
    sweep.write_text(SWEEP.format(sha256=sha256_file(ws.recipe)))
    sign_sweep(sweep, key, trust)
    driver = folder / "driver"
    driver.mkdir()
    run = SweepRun(
        verified=verify_sweep(sweep, trust),
        trust=ws.trust,
        trust_sha256=sha256_file(ws.trust),
        policy_sha256=None,
        workspace=driver,
    )
    task = _task(run, "sweep-test", 0, {"stages[prune].sparsity": 0.5})
    remote = run_trial(task | {"workspace": str(folder / "elsewhere" / "not-here")})
    return {"run": run, "task": task, "result": remote, "driver": driver}


def test_a_worker_that_cannot_see_the_workspace_sends_every_stage_blob_back(
    shipped: dict[str, Any],
) -> None:
    result = shipped["result"]
    assert result["status"] == "passed", result["error"]
    files = [f for m in result["messages"] if m["op"] == "stage" for f in m["stage"]["files"]]
    assert {f["sha256"] for f in files} <= set(result["blobs"])  # and what evaluations stored
    assert not (Path(shipped["task"]["workspace"]) / "objects").exists()  # nothing written here


def test_the_driver_stores_them_by_digest_and_records_a_trial_that_audits(
    shipped: dict[str, Any],
) -> None:
    run, driver = shipped["run"], shipped["driver"]
    with Catalog(catalog_url(driver, None), create=True) as catalog:
        from compressgate.registry.catalog.records import SweepRecord

        verified = run.verified
        catalog.record_sweep_start(
            SweepRecord(
                sweep_id="sweep-test",
                name="one",
                version=1,
                sha256=verified.loaded.sha256,
                content=verified.loaded.data.decode(),
                envelope=verified.envelope.read_text(),
                recipe_sha256=verified.base.loaded.sha256,
                signers=["ml-platform"],
                strategy="grid",
                backend="ray",
                settings={},
                started_at="2026-12-03T00:00:00Z",
            ),
            recipe_content=verified.base.loaded.data.decode(),
            recipe_envelope=verified.base.envelope.read_text(),
            recipe_path=str(verified.base.loaded.path),
            recipe_signers=["ml-platform"],
        )
        _record(run, catalog, "sweep-test", 0, shipped["task"]["params"], shipped["result"], 1)
        trials = catalog.sweep_trials("sweep-test")
        assert [(t.trial, t.status) for t in trials] == [(0, "passed")]
    with Api(driver) as api:
        audit = api.verify_audit()  # raises on a missing or changed artifact
    assert audit.artifacts >= 4  # baseline, distill, prune, int8, export: stored here
    # every blob the trial's stages name is in the driver's store, by its digest
    for sha in shipped["result"]["blobs"]:
        assert sha256_file(driver / "objects" / "sha256" / sha[:2] / sha[2:]) == sha


def test_a_blob_that_is_not_its_digest_is_refused(tmp_path: Path, shipped: dict[str, Any]) -> None:
    sha, text = next(iter(shipped["result"]["blobs"].items()))
    forged = base64.b64encode(base64.b64decode(text) + b"\0").decode()
    with pytest.raises(IntegrityError, match=f"blob named {sha} holds other bytes"):
        receive_blobs({sha: forged}, tmp_path)
    assert not (tmp_path / "objects" / "sha256" / sha[:2] / sha[2:]).exists()
