"""From records to what a report shows: pure functions, no database.

`compressgate.registry.reporting` reads each record the report needs from the catalog once (the
run, its recipe as recorded, earlier runs of the recipe, the chain head) and checks the recipe's
signature; the functions here turn those records into a `ReportData` for
`compressgate.reports.render`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from compressgate.reports.model import Change, Point, SincePrevious

if TYPE_CHECKING:
    from compressgate.registry.catalog.records import RunRecord

HISTORY_RUNS = 10  # earlier runs of the recipe shown on the accuracy plots
HEADLINES = ("accuracy", "paired.accuracy_difference", "size.bytes", "latency.p50_ms")


def history(run: RunRecord, earlier: Sequence[RunRecord]) -> list[Point]:
    """Every finished variant of `run` and of the recipe's `earlier` runs, as plot points."""
    points = []
    for each in [run, *earlier]:
        for stage in each.stages:
            accuracy = stage.metrics.get("accuracy")
            if stage.status != "done" or accuracy is None:
                continue
            latency = stage.metrics.get("latency.p50_ms")
            points.append(
                Point(
                    run_id=each.run_id,
                    seed=stage.seed,
                    stage=stage.name,
                    size_bytes=stage.size_bytes,
                    latency_ms=None if latency is None else latency.estimate,
                    accuracy=accuracy.estimate,
                    ci_low=accuracy.ci_low,
                    ci_high=accuracy.ci_high,
                    current=each.run_id == run.run_id,
                )
            )
    return points


def since_previous(
    run: RunRecord, content: str, before: RunRecord, before_content: str
) -> SincePrevious:
    """What changed from the approved run `before` to `run`: recipe lines, headline metrics."""
    changes = [
        Change(field="recipe", before=line.removeprefix("-"), after="")
        if line.startswith("-")
        else Change(field="recipe", before="", after=line.removeprefix("+"))
        for line in difflib.unified_diff(
            before_content.splitlines(), content.splitlines(), n=0, lineterm=""
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ][:40]
    for name in HEADLINES:
        then, now = headline(before, name), headline(run, name)
        if then != now:
            changes.append(
                Change(field=f"{name} (seed {run.seeds[0]}, final stage)", before=then, after=now)
            )
    return SincePrevious(
        run_id=before.run_id,
        recipe_version=before.recipe.version,
        recipe_sha256=before.recipe.sha256,
        changes=changes,
    )


def headline(run: RunRecord, metric: str) -> str:
    """`metric` of the first seed's final finished stage, or a dash."""
    done = [s for s in run.stages if s.status == "done" and s.seed == run.seeds[0]]
    if not done:
        return "–"
    found = done[-1].metrics.get(metric)
    return "–" if found is None else f"{found.estimate:.6g}"
