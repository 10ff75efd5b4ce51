"""Acceptance of pinned environments: the reference recipe on two of its seeds, isolated under
a real lock (slow: about three minutes; the environment is built once, then reused, then
reproduced in). Two seeds, not three: the third adds run time and nothing that isolation could
get wrong for it alone; `bench/isolation.py` runs all three.

The lock is compressgate's runtime closure as `compressgate env export --requires compressgate`
writes it from this interpreter: about fifty pins, torch included, no dev tools.
`bench/isolation.py` times the same steps; this test asserts no time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from compressgate.recipes.signing import sign_recipe
from compressgate.registry.kernel.keys import load_private_key
from compressgate.registry.run import envs
from compressgate.registry.run.environment import read_lock
from tests.helpers.envs import untouched
from tests.helpers.workspace import Invoke, Workspace


@pytest.mark.slow
def test_the_reference_recipe_runs_isolated_reuses_and_reproduces_in_the_cached_env(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    lock = workspace.root / "requirements.lock"
    exported = cli("env", "export", "--requires", "compressgate", "-o", lock, "--force")
    assert exported.exit_code == 0, exported.stderr
    assert not {"pytest", "mypy", "ruff"} & {p.name for p in read_lock(lock)}
    recipe = workspace.recipe
    text = recipe.read_text().replace("seeds: [0, 1, 2]", "seeds: [0, 1]")
    recipe.write_text(text.replace("strict: true", "strict: true\n  isolate: true"))
    sign_recipe(recipe, load_private_key(workspace.key("ml-platform")))
    store = tmp_path / "envs"
    env = store / envs.lock_digest(lock)
    command = ("run", recipe, "--workspace", workspace.root / ".cg", "--envs", store, "--json")

    first = cli(*command)  # the recipe asks for isolation itself: no --isolate
    assert first.exit_code == 0, first.stderr
    built = json.loads(first.stdout)
    assert built["status"] == "succeeded"
    assert built["isolated"]["built"] is True
    assert built["isolated"]["prefix"] == str(env) != sys.prefix  # from inside the worker
    assert built["isolated"]["interpreter"] == str(env / "bin" / "python")
    assert "building environment" in first.stderr

    before = untouched(env)
    second = cli(*command)
    assert second.exit_code == 0, second.stderr
    reused = json.loads(second.stdout)
    assert reused["isolated"]["built"] is False and reused["isolated"]["refreshed"] is False
    assert reused["isolated"]["prefix"] == str(env)
    assert untouched(env) == before  # nothing installed, the marker as it was
    assert all(s["cached"] for s in reused["stages"])
    assert "building environment" not in second.stderr

    # The environment holds exactly the lock (and compressgate).
    assert cli("env", "verify", lock, "--envs", store).exit_code == 0

    again = cli("reproduce", built["run_id"], "--workspace", workspace.root / ".cg", "--json")
    assert again.exit_code == 0, again.stderr
    reproduced = json.loads(again.stdout)
    assert reproduced["identical"] is True
    assert reproduced["isolated"]["path"] == str(env)
    assert reproduced["isolated"]["built"] is False
    assert len(list(store.iterdir())) == 2  # the environment and its builders' lock file
