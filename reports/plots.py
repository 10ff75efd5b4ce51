"""Inline SVG plots for the audit report, drawn with matplotlib's SVG backend.

Every function takes plain data and returns the `<svg ...>` element as a string, ready to be
inlined into HTML (no XML declaration, no DOCTYPE, no metadata block, no external reference but
the SVG and xlink namespaces). Inputs are the evaluators' own result shapes (pydantic models, or
the dicts they were recorded as) or the small models below; nothing from the catalog.

    pareto(points, x_label=, y_label=, x_log=)  accuracy against size or latency, with the frontier
    pareto_front(points)                        indices of the non-dominated points
    reliability(baseline_bins, final_bins)      reliability diagram of `ReliabilityBin`s
    changes(rows, title=, x_label=, threshold=) forest plot of estimates with intervals
    latency(series, unit=)                      latency quantiles of `LatencyBatch`es
    frontier_plot(trials, objectives, baseline=) a sweep's trials, its gated frontier, its choice

The same input gives the same bytes, in any process: fixed figure sizes, the default style
whatever the user's matplotlibrc says, no date or creator metadata, and element ids hashed with a
salt derived from the plot's kind and input (so two different plots inlined in one page never
share an id). Text stays text (`svg.fonttype: none`) and is escaped by matplotlib's XML writer;
mathtext is off, so a `$` in a label is just a dollar sign. An empty input gives a small SVG
saying "no data".

matplotlib is imported on first use only: importing this module costs pydantic and the
evaluators' result models. Rendering changes matplotlib's global rcParams inside a context
manager, so do not render from several threads at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from compressgate.evaluators.results import LatencyBatch, ReliabilityBin

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ChangeRow",
    "FrontierObjective",
    "FrontierTrial",
    "ParetoPoint",
    "changes",
    "frontier_plot",
    "human_bytes",
    "latency",
    "pareto",
    "pareto_front",
    "reliability",
]

# Colours: this run / candidate / final in blue, earlier runs / baseline in grey-orange.
_CURRENT = "#1f5fa8"
_EARLIER = "#9a9a9a"
_BASELINE = "#d9822b"
_FRONTIER = "#2a9d58"
_FAILED = "#c0392b"
_CHOSEN = "#e3a008"
_LABEL_CHARS = 48

Group = Literal["this run", "earlier runs"]
Goal = Literal["minimize", "maximize"]


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ParetoPoint(_Plain):
    """One variant: lower `x` (bytes, milliseconds) and higher `y` (accuracy) are better.

    The interval need not contain `y` (a percentile bootstrap interval may not): it is drawn as
    recorded. Only y_low > y_high is refused.
    """

    label: str
    x: float
    y: float
    y_low: float | None = Field(default=None, description="lower end of y's interval")
    y_high: float | None = Field(default=None, description="upper end of y's interval")
    group: Group = "this run"

    @model_validator(mode="after")
    def _interval_is_ordered(self) -> ParetoPoint:
        if (self.y_low is None) != (self.y_high is None):
            raise ValueError("give both y_low and y_high, or neither")
        if self.y_low is not None and self.y_high is not None and self.y_low > self.y_high:
            raise ValueError(f"y_low={self.y_low} exceeds y_high={self.y_high}")
        return self


class ChangeRow(_Plain):
    """One row of a forest plot: an estimate and its interval (drawn as recorded, even when the
    interval does not contain the estimate, as a percentile bootstrap interval may not)."""

    name: str
    estimate: float
    ci_low: float
    ci_high: float

    @model_validator(mode="after")
    def _interval_is_ordered(self) -> ChangeRow:
        if self.ci_low > self.ci_high:
            raise ValueError(f"{self.name!r}: ci_low={self.ci_low} exceeds ci_high={self.ci_high}")
        return self


class FrontierObjective(_Plain):
    """One objective of a sweep: a metric, the stage it is measured after, the better way."""

    metric: str
    stage: str
    goal: Goal


class FrontierTrial(BaseModel):
    """One trial of a sweep as `frontier_plot` draws it: its objective values by metric
    (non-finite or missing values are not plotted, but counted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trial: int
    status: Literal["passed", "failed", "crashed"]
    objectives: dict[str, float] = Field(default_factory=dict)
    on_frontier: bool = False
    chosen: bool = False


PointLike = ParetoPoint | Mapping[str, Any]
RowLike = ChangeRow | Mapping[str, Any] | tuple[str, float, float, float]
BinLike = ReliabilityBin | Mapping[str, Any]
BatchLike = LatencyBatch | Mapping[str, Any]


# --- public API -------------------------------------------------------------------------------


def pareto_front(points: Sequence[PointLike | tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, by increasing x.

    A point dominates another when its x is no larger, its y no smaller, and one of the two is
    strictly better. Exact duplicates do not dominate each other: both are on the front. Only the
    point estimates count, not the intervals.
    """
    xy = [_xy(p) for p in points]
    front = [
        i
        for i, (x, y) in enumerate(xy)
        if not any(
            (ox <= x and oy >= y) and (ox < x or oy > y) for j, (ox, oy) in enumerate(xy) if j != i
        )
    ]
    return sorted(front, key=lambda i: (xy[i][0], -xy[i][1], i))


def pareto(points: Sequence[PointLike], *, x_label: str, y_label: str, x_log: bool = False) -> str:
    """Scatter of variants with y intervals, groups drawn apart, and the frontier as a step line.

    "this run" points are filled, "earlier runs" hollow and grey; the frontier (over all points)
    is a step line: from each frontier point the best y stays flat until the next one.
    """
    pts = [ParetoPoint.model_validate(p) for p in points]
    if not pts:
        return _no_data("pareto")
    if x_log and any(p.x <= 0 for p in pts):
        raise ValueError("x_log needs every x > 0")
    front = pareto_front(pts)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for group, color, face in (
            ("earlier runs", _EARLIER, "white"),
            ("this run", _CURRENT, _CURRENT),
        ):
            mine = [p for p in pts if p.group == group]
            if not mine:
                continue
            bars = [
                (p.x, p.y_low, p.y_high)
                for p in mine
                if p.y_low is not None and p.y_high is not None
            ]
            if bars:
                xs, lows, highs = zip(*bars, strict=True)
                ax.vlines(xs, lows, highs, color=color, lw=1, zorder=2)
            ax.scatter(
                [p.x for p in mine],
                [p.y for p in mine],
                s=30,
                facecolors=face,
                edgecolors=color,
                linewidths=1.2,
                label=group,
                zorder=3,
            )
        fx = [pts[i].x for i in front]
        fy = [pts[i].y for i in front]
        ax.step(fx, fy, where="post", color=_FRONTIER, lw=1.2, ls="--", label="frontier", zorder=1)
        position = _spread([math.log(p.x) if x_log else p.x for p in pts])
        for p, where in zip(pts, position, strict=True):
            if not p.label:
                continue  # an unlabelled point: drawn, not named
            right = where > 0.6  # labels of points on the right extend leftwards
            ax.annotate(
                _short(p.label),
                (p.x, p.y),
                xytext=(-4 if right else 4, 4),
                textcoords="offset points",
                ha="right" if right else "left",
                fontsize=7,
                color="#333333",
            )
        if x_log:
            from matplotlib.ticker import LogFormatter

            # The default log labels are mathtext, which is off: plain "2e+06" instead.
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(LogFormatter())
            ax.xaxis.set_minor_formatter(
                LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4))
            )
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, lw=0.4, alpha=0.5)
        fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)

    payload = [[p.model_dump() for p in pts], x_label, y_label, x_log]
    return _render("pareto", payload, (6.4, 4.2), draw)


def reliability(
    baseline_bins: Sequence[BinLike] | None, final_bins: Sequence[BinLike] | None
) -> str:
    """Reliability diagram of the baseline and the final model, with the diagonal.

    Each bin is what `CalibrationResult.reliability` (and `.baseline_reliability`) records, a
    `ReliabilityBin` or its dict: `lower`, `upper` (the bin's confidence range), `count`,
    `confidence` (mean top-label confidence of its samples, None when empty) and `accuracy` (None
    when empty). Empty bins are skipped; a lower panel shows how many samples fall in each bin.
    A missing baseline (None) draws the final model alone.
    """
    base = [ReliabilityBin.model_validate(b) for b in baseline_bins or []]
    final = [ReliabilityBin.model_validate(b) for b in final_bins or []]
    if not any(b.count for b in [*base, *final]):
        return _no_data("reliability")

    def draw(fig: Figure) -> None:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[4, 1])
        top.plot([0, 1], [0, 1], color="#555555", lw=0.8, ls=":", label="perfect calibration")
        for name, bins, color, marker in (
            ("baseline", base, _BASELINE, "s"),
            ("final", final, _CURRENT, "o"),
        ):
            full = [b for b in bins if b.count and b.confidence is not None]
            full = [b for b in full if b.accuracy is not None]
            if not full:
                continue
            total = sum(b.count for b in full)
            top.plot(
                [b.confidence for b in full],
                [b.accuracy for b in full],
                color=color,
                lw=1.2,
                marker=marker,
                ms=4,
                label=f"{name} (n={total})",
            )
            edges = [bins[0].lower, *(b.upper for b in bins)]
            shares = [b.count / total for b in bins]
            bottom.stairs(shares, edges, color=color, lw=1.2)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_aspect("equal", adjustable="box")
        top.set_ylabel("accuracy")
        top.grid(True, lw=0.4, alpha=0.5)
        top.legend(fontsize=8, loc="upper left", frameon=False)
        bottom.set_xlabel("confidence")
        bottom.set_ylabel("share", fontsize=8)
        bottom.tick_params(labelsize=7)
        bottom.set_ylim(bottom=0)

    payload = [[b.model_dump() for b in base], [b.model_dump() for b in final]]
    return _render("reliability", payload, (4.6, 5.6), draw)


def changes(
    rows: Sequence[RowLike],
    *,
    title: str,
    x_label: str,
    threshold: float | None = None,
    threshold_label: str = "threshold",
) -> str:
    """Forest plot: one row per group or class (first row on top), a line at 0, a threshold.

    A row is a `ChangeRow`, a dict with its fields, or a tuple (name, estimate, ci_low, ci_high).
    """
    items = [_row(r) for r in rows]
    if not items:
        return _no_data("changes")
    height = 1.1 + 0.28 * len(items)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ys = list(range(len(items) - 1, -1, -1))
        ax.hlines(ys, [r.ci_low for r in items], [r.ci_high for r in items], color=_CURRENT, lw=1.2)
        ax.plot([r.estimate for r in items], ys, "o", ms=4, color=_CURRENT, zorder=3)
        ax.axvline(0, color="#555555", lw=0.8)
        if threshold is not None:
            ax.axvline(threshold, color="#c0392b", lw=1, ls="--", label=_short(threshold_label))
            fig.legend(loc="outside lower right", fontsize=8, frameon=False)
        ax.set_yticks(ys, [_short(r.name) for r in items], fontsize=8)
        ax.set_ylim(-0.7, len(items) - 0.3)
        ax.set_xlabel(x_label)
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="x", lw=0.4, alpha=0.5)

    payload = [[r.model_dump() for r in items], title, x_label, threshold, threshold_label]
    return _render("changes", payload, (6.4, height), draw)


_UNITS: dict[str, float] = {"s": 1e-3, "ms": 1.0, "us": 1e3}


def latency(series: Sequence[BatchLike], *, unit: Literal["ms", "us", "s"] = "ms") -> str:
    """Latency quantiles of the baseline and the candidate, one panel per batch size.

    Each item is what `LatencyResult.batches` records, a `LatencyBatch` or its dict:
    `batch_size`, `quantiles_ms` (name such as "p50" to an `Estimate` in milliseconds) and
    optionally `baseline_quantiles_ms`. Every quantile is a point with its interval; values are
    converted from milliseconds to `unit`.
    """
    batches = [LatencyBatch.model_validate(b) for b in series]
    batches = [b for b in batches if b.quantiles_ms or b.baseline_quantiles_ms]
    if not batches:
        return _no_data("latency")
    scale = _UNITS[unit]
    columns = min(len(batches), 4)
    rows_ = math.ceil(len(batches) / columns)

    def draw(fig: Figure) -> None:
        axes = fig.subplots(rows_, columns, squeeze=False)
        for index, ax in enumerate(ax for line in axes for ax in line):
            if index >= len(batches):
                ax.set_visible(False)
                continue
            batch = batches[index]
            names = _quantile_order([*batch.quantiles_ms, *(batch.baseline_quantiles_ms or {})])
            for offset, who, quantiles, color, marker in (
                (-0.12, "baseline", batch.baseline_quantiles_ms or {}, _BASELINE, "s"),
                (0.12, "candidate", batch.quantiles_ms, _CURRENT, "o"),
            ):
                here = [(k, n) for k, n in enumerate(names) if n in quantiles]
                if not here:
                    continue
                est = [quantiles[n] for _, n in here]
                xs = [k + offset for k, _ in here]
                ax.vlines(
                    xs,
                    [e.ci_low * scale for e in est],
                    [e.ci_high * scale for e in est],
                    color=color,
                    lw=1.2,
                )
                ax.plot(xs, [e.estimate * scale for e in est], marker, ms=4, color=color, label=who)
            ax.set_xticks(range(len(names)), names, fontsize=8)
            ax.set_xlim(-0.5, len(names) - 0.5)
            ax.set_ylim(bottom=0)
            ax.set_title(f"batch {batch.batch_size}", fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
            ax.grid(True, axis="y", lw=0.4, alpha=0.5)
            if index % columns == 0:
                ax.set_ylabel(f"latency ({unit})")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=2, fontsize=8, frameon=False)

    payload = [[b.model_dump() for b in batches], unit]
    return _render("latency", payload, (1.2 + 2.3 * columns, 0.6 + 2.6 * rows_), draw)


_ANNOTATE_UP_TO = 40  # trials: beyond this, numbers next to every point would hide the points


def frontier_plot(
    trials: Sequence[FrontierTrial | Mapping[str, Any]],
    objectives: Sequence[FrontierObjective | Mapping[str, Any]],
    *,
    baseline: Mapping[str, float] | None = None,
) -> str:
    """A sweep's trials on its first two objectives, or one objective against the trial number.

    Trials that pass every gate are filled dots, those that failed a gate red crosses; the
    frontier (the trials marked `on_frontier`) is ringed and, with exactly two objectives, joined
    by a step line (flat towards the worse side of x); the chosen trial is a star named
    "trial N". Up to 40 trials, every point carries its trial number. Crashed trials and trials
    without the plotted values are not drawn; the title counts them. `baseline` (metric to the
    float baseline's value) draws dotted reference lines.
    """
    objs = [FrontierObjective.model_validate(o) for o in objectives]
    rows = sorted((FrontierTrial.model_validate(t) for t in trials), key=lambda t: t.trial)
    if not objs:
        raise ValueError("frontier_plot needs one objective or more")
    shown = objs[:2]

    def values(trial: FrontierTrial) -> tuple[float, ...] | None:
        found = [trial.objectives.get(o.metric) for o in shown]
        finite = [v for v in found if v is not None and math.isfinite(v)]
        return tuple(finite) if len(finite) == len(found) else None

    drawn = [(t, v) for t in rows if t.status != "crashed" and (v := values(t)) is not None]
    crashed = sum(t.status == "crashed" for t in rows)
    missing = sum(t.status != "crashed" for t in rows) - len(drawn)
    if not drawn:
        return _no_data("frontier")
    one = len(shown) == 1
    points = [(t, (float(t.trial), v[0]) if one else (v[0], v[1])) for t, v in drawn]
    refs = {k: v for k, v in (baseline or {}).items() if math.isfinite(v)}

    def draw(fig: Figure) -> None:
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        ax = fig.add_subplot()
        for status, label, marker, color in (
            ("passed", "passes every gate", "o", _CURRENT),
            ("failed", "fails a gate", "x", _FAILED),
        ):
            mine = [xy for t, xy in points if t.status == status]
            if mine:
                xs, ys = zip(*mine, strict=True)
                ax.scatter(
                    xs, ys, s=32, marker=marker, color=color, linewidths=1.4, label=label, zorder=3
                )
        front = sorted(xy for t, xy in points if t.on_frontier)
        if front:
            fx, fy = zip(*front, strict=True)
            # With two objectives the step line carries the legend entry; with more, the front
            # over all of them need not be a staircase in the first two: rings only.
            ringed = {1: "frontier", 2: None}.get(
                len(objs), f"frontier (all {len(objs)} objectives)"
            )
            ax.scatter(
                fx,
                fy,
                s=120,
                facecolors="none",
                edgecolors=_FRONTIER,
                linewidths=1.4,
                label=ringed,
                zorder=2,
            )
            if len(objs) == 2:
                where: Literal["pre", "post"] = "post" if shown[0].goal == "minimize" else "pre"
                ax.step(
                    fx,
                    fy,
                    where=where,
                    color=_FRONTIER,
                    lw=1.2,
                    ls="--",
                    label="frontier",
                    zorder=1,
                )
            elif one:
                best = min(fy) if shown[0].goal == "minimize" else max(fy)
                ax.axhline(best, color=_FRONTIER, lw=1.2, ls="--", zorder=1)
        for t, xy in points:
            if t.chosen:
                ax.scatter(
                    *xy,
                    marker="*",
                    s=260,
                    color=_CHOSEN,
                    edgecolors="#7d4e00",
                    linewidths=0.8,
                    label="chosen",
                    zorder=4,
                )
                ax.annotate(
                    f"trial {t.trial}",
                    xy,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                    xytext=(8, -12),
                    textcoords="offset points",
                    fontsize=8,
                    fontweight="bold",
                    color="#7d4e00",
                )
        if len(points) <= _ANNOTATE_UP_TO:
            position = _spread([xy[0] for _, xy in points])
            for (t, xy), where_x in zip(points, position, strict=True):
                if t.chosen:
                    continue
                right = where_x > 0.6
                ax.annotate(
                    str(t.trial),
                    xy,
                    xytext=(-4 if right else 4, 4),
                    textcoords="offset points",
                    ha="right" if right else "left",
                    fontsize=7,
                    color="#333333",
                )
        # A baseline far from every trial would squeeze them into a corner: it is drawn only
        # near them, and named in the axis label either way.
        named = False
        if not one and _near(refs.get(shown[0].metric), [xy[0] for _, xy in points]):
            ax.axvline(
                refs[shown[0].metric],
                color="#555555",
                lw=0.9,
                ls=":",
                zorder=1,
                label="float baseline",
            )
            named = True
        if _near(refs.get(shown[-1].metric), [xy[1] for _, xy in points]):
            ax.axhline(
                refs[shown[-1].metric],
                color="#555555",
                lw=0.9,
                ls=":",
                zorder=1,
                label=None if named else "float baseline",
            )
        bytes_axis = FuncFormatter(lambda value, _: human_bytes(value))
        if one:
            ax.set_xlabel("trial")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.set_xlabel(_objective_label(shown[0], refs.get(shown[0].metric)))
            if _is_bytes(shown[0].metric):
                ax.xaxis.set_major_formatter(bytes_axis)
        ax.set_ylabel(_objective_label(shown[-1], refs.get(shown[-1].metric)))
        if _is_bytes(shown[-1].metric):
            ax.yaxis.set_major_formatter(bytes_axis)
        passed = sum(t.status == "passed" for t, _ in points)
        caption = f"{passed} pass every gate, {len(points) - passed} fail a gate"
        if crashed:
            caption += f"; {crashed} crashed, not plotted"
        if missing:
            caption += f"; {missing} without values, not plotted"
        if len(objs) > 2:
            caption += f"; first 2 of {len(objs)} objectives"
        ax.set_title(caption, fontsize=8, color="#555555")
        ax.grid(True, lw=0.4, alpha=0.5)
        fig.legend(loc="outside lower center", ncols=5, fontsize=8, frameon=False)

    payload = [
        [t.model_dump() for t in rows],
        [o.model_dump() for o in objs],
        sorted(refs.items()),
    ]
    return _render("frontier", payload, (6.4, 4.6), draw)


def human_bytes(n: float) -> str:
    """A byte count in binary units (KiB, MiB, ...) with three significant digits or so."""
    value = float(n)
    if not math.isfinite(value):
        return str(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            if unit == "B":
                return f"{value:.0f} B"
            digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
            return f"{value:.{digits}f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


# --- helpers ----------------------------------------------------------------------------------


def _is_bytes(metric: str) -> bool:
    return metric.rsplit(".", 1)[-1].endswith("bytes")


def _objective_label(objective: FrontierObjective, baseline: float | None) -> str:
    """Two lines: the metric and its stage; which way is better, and the float baseline."""
    better = "lower" if objective.goal == "minimize" else "higher"
    label = f"{objective.metric} at {objective.stage}\n{objective.goal}: {better} is better"
    if baseline is None:
        return label
    value = human_bytes(baseline) if _is_bytes(objective.metric) else f"{baseline:.4g}"
    return f"{label} · float baseline {value}"


def _near(value: float | None, values: Sequence[float]) -> bool:
    """Whether `value` lies within the range of `values` widened by a quarter on each side."""
    if value is None:
        return False
    low, high = min(values), max(values)
    pad = 0.25 * ((high - low) or abs(high) or 1.0)
    return low - pad <= value <= high + pad


def _xy(point: PointLike | tuple[float, float]) -> tuple[float, float]:
    if isinstance(point, tuple):
        x, y = point
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"pareto_front needs finite coordinates, got {point}")
        return float(x), float(y)
    p = ParetoPoint.model_validate(point)
    return p.x, p.y


def _row(row: RowLike) -> ChangeRow:
    if isinstance(row, tuple):
        name, estimate, low, high = row
        return ChangeRow(name=name, estimate=estimate, ci_low=low, ci_high=high)
    return ChangeRow.model_validate(row)


def _spread(values: Sequence[float]) -> list[float]:
    """Each value's position between the smallest (0) and the largest (1); 0 when all equal."""
    low, high = min(values), max(values)
    return [(v - low) / (high - low) if high > low else 0.0 for v in values]


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _quantile_order(names: Sequence[str]) -> list[str]:
    """Unique names, "p50" < "p90" < "p99.9" by their number, others after in first-seen order."""
    unique = list(dict.fromkeys(names))

    def key(item: tuple[int, str]) -> tuple[int, float, int]:
        position, name = item
        match = re.fullmatch(r"p(\d+(?:\.\d+)?)", name)
        return (0, float(match.group(1)), position) if match else (1, 0.0, position)

    return [name for _, name in sorted(enumerate(unique), key=key)]


def _rc(salt: str) -> dict[str, Any]:
    return {
        "svg.hashsalt": salt,
        "svg.fonttype": "none",
        "svg.id": None,
        "text.parse_math": False,
        "text.usetex": False,
        "font.family": "sans-serif",
        # Measured with DejaVu Sans (bundled with matplotlib); the browser may substitute.
        "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.dpi": 72,
        "savefig.dpi": 72,
        "savefig.facecolor": "white",
        "savefig.edgecolor": "white",
        "path.simplify": True,
    }


# Everything matplotlib would write into <metadata>, including links to purl.org and matplotlib.
_NO_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Format": None, "Type": None}


def _render(
    kind: str, payload: Any, size: tuple[float, float], draw: Callable[[Figure], None]
) -> str:
    """Draw on a fresh Figure (no pyplot) under the default style and our rc; return `<svg>`."""
    import matplotlib.style
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    digest = hashlib.sha256(
        json.dumps([kind, payload], sort_keys=True, ensure_ascii=True).encode()
    ).hexdigest()[:16]
    rc = _rc(f"compressgate-{kind}-{digest}")
    with matplotlib.style.context(["default", rc]), warnings.catch_warnings():
        # A label in a script DejaVu Sans lacks still renders (as text, in the browser's font).
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
        fig = Figure(figsize=size, dpi=72, layout="constrained")
        FigureCanvasSVG(fig)
        draw(fig)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata=_NO_METADATA)
    return _strip_prolog(buffer.getvalue().decode("utf-8"))


def _strip_prolog(svg: str) -> str:
    """The `<svg>` element alone, without ids nothing refers to.

    matplotlib names every group (`figure_1`, `axes_1`, ...): inlined twice in one page those
    would be duplicate ids. Only clip paths and markers are referred to (by salted hashes), so the
    other ids go. Text content cannot hold a tag: matplotlib escapes `<` and `>` in it.
    """
    start = svg.find("<svg")
    if start < 0:  # pragma: no cover - matplotlib always writes one
        raise RuntimeError("matplotlib wrote no <svg> element")
    svg = svg[start:].strip() + "\n"
    referenced = set(re.findall(r'(?:url\(#|href="#)([^)"]+)', svg))

    def keep_referenced(tag: re.Match[str]) -> str:
        return re.sub(
            r' id="([^"]*)"',
            lambda attr: attr.group(0) if attr.group(1) in referenced else "",
            tag.group(0),
        )

    return re.sub(r"<[^>]*>", keep_referenced, svg)


def _no_data(kind: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="240pt" height="48pt" '
        f'viewBox="0 0 240 48" role="img" aria-label="{kind}: no data">'
        '<rect width="240" height="48" fill="#ffffff" stroke="#cccccc"/>'
        '<text x="120" y="29" text-anchor="middle" font-family="sans-serif" font-size="12" '
        'fill="#777777">no data</text></svg>\n'
    )
