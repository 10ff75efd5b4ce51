"""Reproduction: a recorded run re-run from scratch, every stage's artifact digest compared.

The recipe must be the one the run ran (same sha256, or exit 3). A run that ran isolated is
re-run isolated, under the same lock (or exit 3), in the environment it ran in when that is
still there, else in one built from the same lock.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from compressgate.recipes.load import load_recipe
from compressgate.recipes.trust import load_trust
from compressgate.registry.catalog.records import RunRecord
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.errors import IntegrityError, NotFoundError
from compressgate.registry.run import envs
from compressgate.registry.run.engine import RunOptions, run_recipe


def load_run(options: RunOptions, run_id: str) -> RunRecord:
    """A run's record, exported from the catalog."""
    with options.open_catalog(create=False) as catalog:
        return catalog.run(run_id)


@dataclass
class Comparison:
    seed: int
    name: str
    recorded: str | None
    reproduced: str | None

    @property
    def identical(self) -> bool:
        return self.recorded is not None and self.recorded == self.reproduced


def recorded_recipe(run: RunRecord) -> Path:
    """The recipe a run ran; exit 3 if its bytes changed since."""
    path = Path(run.recipe.path)
    current = sha256_file(path) if path.is_file() else None
    if current != run.recipe.sha256:
        raise IntegrityError(
            f"{path} is not the recipe run {run.run_id} ran: its sha256 is "
            f"{current or 'missing'}, the run recorded {run.recipe.sha256}"
        )
    return path


def reproduce(run_id: str, options: RunOptions) -> tuple[RunRecord, RunRecord, list[Comparison]]:
    """Re-run a recorded run from scratch in a temporary workspace; compare every digest.

    Raises IntegrityError (exit 3) naming the first stage whose artifact differs.
    """
    original = load_run(options, run_id)
    if original.status != "succeeded":
        raise NotFoundError(f"run {run_id} did not succeed ({original.status}); nothing to compare")
    path = recorded_recipe(original)
    isolated = original.environment.get("isolated")
    envs_store = options.envs
    if isolated is not None:
        # The same environment: the lock must be the one the run used, and its store the same.
        lock = (
            path.parent / load_recipe(path, trust=load_trust(options.trust)).recipe.environment.lock
        )
        if not lock.is_file() or sha256_file(lock) != isolated["lock_sha256"]:
            raise IntegrityError(
                f"{lock} is not the lock run {run_id} ran under: its sha256 is "
                f"{sha256_file(lock) if lock.is_file() else 'missing'}, the run recorded "
                f"{isolated['lock_sha256']}"
            )
        # The environment it ran in, where it still is; else one built from the same lock.
        recorded = Path(isolated["path"])
        if envs.is_built(recorded) or envs_store is None:
            envs_store = recorded.parent
    with tempfile.TemporaryDirectory(prefix="compressgate-reproduce-") as scratch:
        again = run_recipe(
            path,
            RunOptions(
                workspace=Path(scratch),
                trust=options.trust,
                force=True,
                progress=options.progress,
                on_stage=options.on_stage,
                isolate=isolated is not None,
                envs=envs_store,
            ),
        )
    comparisons = [
        Comparison(
            r.seed,
            r.name,
            r.artifact_sha256,
            next(
                (a.artifact_sha256 for a in again.stages if (a.seed, a.name) == (r.seed, r.name)),
                None,
            ),
        )
        for r in original.stages
    ]
    return original, again, comparisons
