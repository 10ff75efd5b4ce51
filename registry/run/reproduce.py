"""Reproduction: a recorded run re-run from scratch (every stage and every evaluation recomputed,
no stage cache), every stage's artifact digest and every measured figure compared.

Figures a deterministic computation gives (accuracy, calibration, fidelity, size, …) must be
equal; a session's peak memory, an allocator's high-water mark, within 25% (or its interval).
Timings (`latency.*`: milliseconds, throughput, speedups) are not judged: measured here, a
reproduction on a busy machine gave a batch-64 speedup of 6.15 against a recorded 4.39, so they
say how busy the machine was as much as what the model is; those that come out outside the
recorded interval (and more than 25% away) are listed (`timed_apart`). So
evidence forged into a run's records, or into a stage cache entry it reused, does not
reproduce.

The recipe must be the one the run ran (same sha256, or exit 3). A run that ran isolated is
re-run isolated, under the same lock (or exit 3), in the environment it ran in when that is
still there, else in one built from the same lock.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


SAMPLED = ("size.peak_memory",)  # an allocator's high-water mark: within 25% of the recorded
RATIO_TOLERANCE = 0.25


def timed(name: str) -> bool:
    """A figure read off a clock: it depends on what else the machine was doing."""
    return name.startswith("latency.")


@dataclass
class Comparison:
    seed: int
    name: str
    recorded: str | None
    reproduced: str | None
    metrics_checked: int = 0
    metrics_differing: tuple[str, ...] = ()  # "NAME: recorded X, reproduced Y"
    timed_apart: tuple[str, ...] = ()  # timings outside the recorded interval: reported only

    @property
    def identical(self) -> bool:
        return (
            self.recorded is not None
            and self.recorded == self.reproduced
            and not self.metrics_differing
        )


def compare_metrics(
    recorded: dict[str, Any], reproduced: dict[str, Any]
) -> tuple[int, list[str], list[str]]:
    """How many figures were compared, each that differs, and each timing that came out away
    from the recorded one (reported, not judged: see the module docstring)."""
    differing: list[str] = []
    apart: list[str] = []
    compared = 0
    for name in sorted(set(recorded) | set(reproduced)):
        a, b = recorded.get(name), reproduced.get(name)
        if a is None or b is None:
            differing.append(f"{name}: {'recorded only' if b is None else 'reproduced only'}")
            continue
        if name.startswith(SAMPLED) or timed(name):
            overlap = (
                None not in (a.ci_low, a.ci_high, b.ci_low, b.ci_high)
                and b.ci_low <= a.ci_high
                and a.ci_low <= b.ci_high
            )
            if not (overlap or math.isclose(a.estimate, b.estimate, rel_tol=RATIO_TOLERANCE)):
                line = f"{name}: recorded {a.estimate:.6g}, reproduced {b.estimate:.6g}"
                (apart if timed(name) else differing).append(line)
            if timed(name):
                continue
        elif not math.isclose(a.estimate, b.estimate, rel_tol=1e-9, abs_tol=1e-12):
            differing.append(f"{name}: recorded {a.estimate:.6g}, reproduced {b.estimate:.6g}")
        compared += 1
    return compared, differing, apart


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
    comparisons = []
    for r in original.stages:
        twin = next((a for a in again.stages if (a.seed, a.name) == (r.seed, r.name)), None)
        checked, differing, apart = compare_metrics(r.metrics, twin.metrics if twin else {})
        comparisons.append(
            Comparison(
                r.seed,
                r.name,
                r.artifact_sha256,
                None if twin is None else twin.artifact_sha256,
                checked,
                tuple(differing),
                tuple(apart),
            )
        )
    return original, again, comparisons
