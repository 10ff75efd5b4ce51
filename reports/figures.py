"""The report's plots from its data: adapters from recorded results to
`compressgate.reports.plots`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compressgate.reports.model import Point


def accuracy_vs(points: Sequence[Point], axis: str) -> str:
    """Accuracy (with its interval) against size or latency, this run's variants and the
    recipe's earlier runs, with the Pareto frontier marked."""
    from compressgate.reports import plots

    chosen = [p for p in points if (p.size_bytes if axis == "size" else p.latency_ms) is not None]
    xs = [float(p.size_bytes if axis == "size" else p.latency_ms) for p in chosen]  # type: ignore[arg-type]
    front = set(plots.pareto_front([(x, p.accuracy) for x, p in zip(xs, chosen, strict=True)]))
    return plots.pareto(
        [
            plots.ParetoPoint(
                # Only the frontier is named: dozens of labels would hide the points.
                label=f"{p.stage} (seed {p.seed})" if index in front else "",
                x=xs[index],
                y=p.accuracy,
                y_low=p.ci_low,
                y_high=p.ci_high,
                group="this run" if p.current else "earlier runs",
            )
            for index, p in enumerate(chosen)
        ],
        x_label="size on disk (bytes)" if axis == "size" else "latency p50 at batch 1 (ms)",
        y_label="test accuracy",
        x_log=axis == "size",
    )


def reliability_of(calibration: dict[str, Any]) -> str:
    from compressgate.reports import plots

    baseline = calibration.get("baseline_reliability")
    final = calibration.get("reliability")
    if not baseline or not final:
        return ""
    return plots.reliability(baseline, final)


def group_changes(fairness: dict[str, Any]) -> str:
    from compressgate.reports import plots

    rows = [
        (f"group {g['name']}", -g["drop"]["estimate"], -g["drop"]["ci_high"], -g["drop"]["ci_low"])
        for g in fairness.get("groups", [])
        if g.get("drop")
    ]
    return plots.changes(rows, title="accuracy change per group", x_label="candidate − baseline")


def class_changes(classes: dict[str, Any]) -> str:
    from compressgate.reports import plots

    rows = [
        (f"class {c['name']}", -c["drop"]["estimate"], -c["drop"]["ci_high"], -c["drop"]["ci_low"])
        for c in classes.get("classes", [])
        if c.get("drop")
    ]
    return plots.changes(rows, title="recall change per class", x_label="candidate − baseline")


def latency_of(latency: dict[str, Any]) -> str:
    from compressgate.reports import plots

    return plots.latency(latency.get("batches", []))
