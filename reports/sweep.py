"""The sweep report: a sweep's trials, its Pareto frontier among the trials that pass every gate,
the variant it chose and why; as self-contained HTML, Markdown or JSON.

`reports` never opens the catalog: `registry` fills a `SweepReportData` from the sweep's records
and calls `render_sweep`. The same data gives the same bytes (the plot's included).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SweepObjective", "SweepReportData", "SweepTrialRow", "render_sweep"]

SweepFormat = Literal["html", "md", "json"]
SWEEP_FORMATS: tuple[str, ...] = ("html", "md", "json")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepObjective(_Record):
    """One objective: a metric measured after a stage, and which way is better."""

    metric: str
    stage: str
    goal: Literal["minimize", "maximize"]


class SweepTrialRow(_Record):
    """One trial (one run of one variant of the recipe) as the report shows it."""

    trial: int
    run_id: str | None
    params: dict[str, Any] = Field(description="axis path -> the value this trial took")
    status: Literal["passed", "failed", "crashed"]
    objectives: dict[str, float] = Field(description="metric -> value; empty when crashed")
    failed_gates: list[str] = []
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    on_frontier: bool = False
    chosen: bool = False
    report_href: str | None = Field(
        default=None, description="relative link to the trial run's own report; None: no link"
    )


class SweepReportData(_Record):
    """Everything the sweep report shows. Refused when it contradicts itself: `frontier` and
    `chosen` must name exactly the trials flagged `on_frontier` and `chosen`, and only trials
    that passed every gate."""

    sweep_id: str
    name: str
    version: int
    sha256: str
    recipe_name: str
    recipe_version: int
    recipe_sha256: str
    signers: list[str]
    strategy: str
    backend: str
    workers: int
    started_at: str
    finished_at: str | None
    status: str = Field(description='"finished" | "stopped" | "running"')
    budget_trials: int
    wall_time: float | None
    selection: dict[str, Any] = Field(
        description='the split the search ranked on: {"fraction", "seed", "digests"}'
    )
    axes: dict[str, list[Any]]
    objectives: list[SweepObjective] = Field(min_length=1, max_length=4)
    choose: str = Field(description="the choice rule in words")
    trials: list[SweepTrialRow]
    frontier: list[int]
    chosen: int | None
    why: str
    baseline: dict[str, float] = Field(
        default={}, description="the float baseline's value of each objective metric"
    )
    generated_at: str

    @model_validator(mode="after")
    def _consistent(self) -> SweepReportData:
        numbers = [t.trial for t in self.trials]
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        if repeated:
            raise ValueError(f"trial numbers repeat: {repeated}")
        by_number = {t.trial: t for t in self.trials}
        flagged = sorted(t.trial for t in self.trials if t.on_frontier)
        if sorted(set(self.frontier)) != flagged:
            raise ValueError(f"frontier={self.frontier} but trials {flagged} are on_frontier")
        chosen = [t.trial for t in self.trials if t.chosen]
        if chosen != ([] if self.chosen is None else [self.chosen]):
            raise ValueError(f"chosen={self.chosen} but trials {chosen} are flagged chosen")
        named = [*self.frontier, *([] if self.chosen is None else [self.chosen])]
        unfit = sorted({n for n in named if by_number[n].status != "passed"})
        if unfit:
            raise ValueError(f"trials {unfit} are on the frontier or chosen but did not pass")
        return self


def render_sweep(data: SweepReportData, fmt: SweepFormat = "html") -> bytes:
    """The sweep report in `fmt`: self-contained HTML with the frontier plot inline, Markdown
    (the same content without the plot), or JSON (the data as given)."""
    if fmt not in SWEEP_FORMATS:
        from compressgate.registry.kernel.errors import ManifestError

        raise ManifestError(f"--format {fmt!r}: one of {', '.join(SWEEP_FORMATS)}")
    if fmt == "json":
        return (data.model_dump_json(indent=2) + "\n").encode("utf-8")
    from compressgate.reports.render import _env

    context = _context(data)
    if fmt == "html":
        context["plot"] = _plot(data)
        return _env().get_template("sweep.html").render(**context).encode("utf-8")
    return _env().get_template("sweep.md").render(**context).encode("utf-8")


# --- context -----------------------------------------------------------------------------------


def _context(data: SweepReportData) -> dict[str, Any]:
    axes = list(dict.fromkeys([*data.axes, *(k for t in data.trials for k in t.params)]))
    objectives = [
        {
            "metric": o.metric,
            "stage": o.stage,
            "goal": o.goal,
            "arrow": "↓" if o.goal == "minimize" else "↑",
            "baseline": _metric(o.metric, data.baseline.get(o.metric)),
        }
        for o in data.objectives
    ]
    rows = [_row(t, axes, data.objectives) for t in sorted(data.trials, key=lambda t: t.trial)]
    chosen = next((r for r in rows if r["chosen"]), None)
    counts = {s: sum(t.status == s for t in data.trials) for s in ("passed", "failed", "crashed")}
    return {
        "d": data,
        "short": _short_sha,
        "mdv": _md_value,
        "axes": axes,
        "axis_values": {k: [_value(v) for v in data.axes.get(k, [])] for k in axes},
        "objectives": objectives,
        "rows": rows,
        "chosen": chosen,
        "counts": counts,
        "selection": _selection(data.selection),
        "wall_time": _duration(data.wall_time),
        "caption": _caption(data, counts),
    }


def _row(trial: SweepTrialRow, axes: list[str], objectives: list[SweepObjective]) -> dict[str, Any]:
    missing = {"text": "–", "title": None}
    return {
        "trial": trial.trial,
        "run_id": trial.run_id,
        "status": trial.status,
        "failed_gates": trial.failed_gates,
        "error": trial.error,
        "params": [_value(trial.params[k]) if k in trial.params else missing for k in axes],
        "named_params": [(k, _value(trial.params[k])) for k in axes if k in trial.params],
        "objectives": [_metric(o.metric, trial.objectives.get(o.metric)) for o in objectives],
        "seconds": _duration(trial.seconds),
        "attempts": trial.attempts,
        "on_frontier": trial.on_frontier,
        "chosen": trial.chosen,
        "href": _safe_href(trial.report_href),
    }


def _selection(selection: dict[str, Any]) -> dict[str, Any]:
    """The selection split's description: its settings in order, then its digests."""
    digests = selection.get("digests") or {}
    first = [k for k in ("fraction", "seed") if k in selection]
    rest = [k for k in selection if k not in ("fraction", "seed", "digests")]
    return {
        "parts": [(k, _value(selection[k])) for k in [*first, *rest]],
        "digests": [(str(k), str(v)) for k, v in digests.items()]
        if isinstance(digests, dict)
        else [("", str(digests))],
    }


def _caption(data: SweepReportData, counts: dict[str, int]) -> str:
    shown = [o.metric for o in data.objectives[:2]]
    if len(shown) == 1:
        what = f"{shown[0]} of each trial, by trial number"
    else:
        what = f"{shown[1]} against {shown[0]}"
        if len(data.objectives) > 2:
            what += f" (the first 2 of {len(data.objectives)} objectives)"
    text = f"{what}: {counts['passed']} trial(s) pass every gate, {counts['failed']} fail a gate"
    if counts["crashed"]:
        text += f"; {counts['crashed']} crashed, not plotted"
    return text + "."


def _plot(data: SweepReportData) -> str:
    from compressgate.reports import plots

    return plots.frontier_plot(
        [
            t.model_dump(include={"trial", "status", "objectives", "on_frontier", "chosen"})
            for t in data.trials
        ],
        [o.model_dump() for o in data.objectives],
        baseline=data.baseline,
    )


# --- formatting --------------------------------------------------------------------------------


def _short_sha(digest: str) -> str:
    return digest[:12]


_PLAIN = re.compile(r"[-+0-9.,e ]+|true|false|null|inf|nan|–")


def _md_value(text: str) -> str:
    """A value in a Markdown cell: a number as is (inert already), any other text literal."""
    from compressgate.reports.render import _md, _text

    return _md(text) if _PLAIN.fullmatch(text) else _text(text)


def _value(value: Any) -> dict[str, str | None]:
    """A parameter value for a cell: floats to 4 significant digits (exact in the title),
    lists and mappings as compact JSON."""
    if isinstance(value, bool) or value is None:
        return {"text": json.dumps(value), "title": None}
    if isinstance(value, float):
        text = f"{value:.4g}"
        return {"text": text, "title": None if text == repr(value) else repr(value)}
    if isinstance(value, int | str):
        return {"text": str(value), "title": None}
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return {"text": text, "title": None}


def _metric(metric: str, value: float | None) -> dict[str, str | None]:
    """An objective value: bytes in binary units (the exact count in the title), any other
    to 4 significant digits."""
    from compressgate.reports.plots import _is_bytes, human_bytes

    if value is None:
        return {"text": "–", "title": None}
    if not math.isfinite(value):
        return {"text": str(value), "title": None}
    if _is_bytes(metric):
        exact = f"{int(value):,}" if value == int(value) else repr(value)
        return {"text": human_bytes(value), "title": f"{exact} bytes"}
    text = f"{value:.4g}"
    return {"text": text, "title": None if text == repr(value) else repr(value)}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _safe_href(href: str | None) -> str | None:
    """A relative link to a trial's report, or None for anything else (a scheme such as
    `javascript:` or `https:`, a `//host` reference, a backslash or control character)."""
    if not href or _SCHEME.match(href) or href.startswith("//"):
        return None
    if "\\" in href or any(ord(c) < 0x20 or ord(c) == 0x7F for c in href):
        return None
    return quote(href, safe="/._-~#?=&%+:@")
