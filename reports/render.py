"""Render a `ReportData` as a self-contained HTML audit report, Markdown, a JSON evidence bundle
or a model card, with Jinja2 (autoescaped HTML) and inline SVG plots.

Deterministic: the same data gives the same bytes; only recorded timestamps appear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from compressgate.reports.model import ReportData

if TYPE_CHECKING:
    import jinja2

Format = Literal["html", "md", "json", "card"]
FORMATS: tuple[str, ...] = ("html", "md", "json", "card")


def check_format(fmt: str) -> None:
    """A report format this module renders; any other is bad input (exit 2)."""
    if fmt not in FORMATS:
        from compressgate.registry.kernel.errors import ManifestError

        raise ManifestError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")


def render(data: ReportData, fmt: Format | str) -> bytes:
    """The report in `fmt` (checked: `check_format`), as the bytes to write."""
    check_format(fmt)
    renderers: dict[str, Callable[[ReportData], str]] = {
        "html": html,
        "md": markdown,
        "json": evidence,
        "card": card,
    }
    return renderers[fmt](data).encode("utf-8")


def html(data: ReportData) -> str:
    return _env().get_template("report.html").render(**_context(data), plots=_plots(data))


def markdown(data: ReportData) -> str:
    return _env().get_template("report.md").render(**_context(data))


def card(data: ReportData) -> str:
    """The model card: the Hugging Face Hub's YAML header (`reports.hfcard`), then Markdown."""
    from compressgate.reports.hfcard import header

    return _env().get_template("card.md").render(**_context(data), header=header(data))


def evidence(data: ReportData) -> str:
    """The JSON evidence bundle: everything the report shows, and the sha256 of the HTML and
    Markdown reports rendered from it."""
    body = data.model_dump(mode="json")
    body["reports"] = {
        "html_sha256": hashlib.sha256(html(data).encode("utf-8")).hexdigest(),
        "md_sha256": hashlib.sha256(markdown(data).encode("utf-8")).hexdigest(),
    }
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


# --- context -----------------------------------------------------------------------------------


def _context(data: ReportData) -> dict[str, Any]:
    run = data.run
    stages = run.get("stages", [])
    last = max((s["name"] for s in stages if s.get("status") == "done"), default=None, key=None)
    names = []
    for stage in stages:
        if stage["name"] not in names:
            names.append(stage["name"])
    final = names[-1] if names else last
    return {
        "d": data,
        "run": run,
        "review": data.review,
        "recipe": data.recipe,
        "stages": [_stage_row(s) for s in stages],
        "embedding": any("cosine.mean" in s.get("metrics", {}) for s in stages),
        "groups": [row for s in stages for row in _group_rows(s)],
        "parity": [row for s in stages if (row := _parity_row(s)) is not None],
        "final": final,
        "environment": run.get("environment", {}).get("fingerprint", {}),
    }


def _stage_row(stage: dict[str, Any]) -> dict[str, Any]:
    metrics = stage.get("metrics", {})

    def estimate(name: str) -> dict[str, Any] | None:
        found = metrics.get(name)
        return found if isinstance(found, dict) else None

    return {
        "seed": stage["seed"],
        "name": stage["name"],
        "kind": stage["kind"],
        "format": stage.get("format") or "",
        "params": stage.get("params"),
        "macs": stage.get("macs"),
        "size": stage.get("size_bytes"),
        "sha": (stage.get("artifact_sha256") or "")[:12],
        "cached": stage.get("cached", False),
        "accuracy": estimate("accuracy"),
        "difference": estimate("paired.accuracy_difference"),
        "latency": estimate("latency.p50_ms"),
        "speedup": estimate("latency.speedup_p50"),
        # The baseline's p50 from the same interleaved measurement as the speedup, and what it
        # ran: another stage's own row may have timed the baseline in another runtime.
        "baseline_latency": _baseline_p50(stage),
        "compared_with": (stage.get("evaluations", {}).get("latency") or {}).get("compared_with"),
        "cosine": estimate("cosine.mean"),
        "cosine_p1": estimate("cosine.p1"),
        "how": _how(stage),
    }


def _baseline_p50(stage: dict[str, Any]) -> dict[str, Any] | None:
    """The baseline's p50 at the first batch size, timed in the same sessions as this stage."""
    latency = stage.get("evaluations", {}).get("latency") or {}
    batches = latency.get("batches") or []
    if not batches:
        return None
    found = (batches[0].get("baseline_quantiles_ms") or {}).get("p50")
    return found if isinstance(found, dict) else None


def _how(stage: dict[str, Any]) -> str:
    """What a quantize stage chose (method, weight granularity, layers kept in float)."""
    details = stage.get("details") or {}
    if stage.get("kind") != "quantize" or "method" not in details:
        return ""
    grain = "per-channel" if details.get("per_channel") else "per-tensor"
    kept = details.get("kept_float") or []
    text = f"{details['method']} int8, {grain} weights"
    return text + (f", {len(kept)} layer(s) kept in float" if kept else ", none kept in float")


def _group_rows(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """Per group of the fairness evaluator: accuracy and its drop from the baseline."""
    fairness = stage.get("evaluations", {}).get("fairness")
    if not isinstance(fairness, dict):
        return []
    return [
        {
            "seed": stage["seed"],
            "stage": stage["name"],
            "group": group.get("name"),
            "n": group.get("n"),
            "accuracy": group.get("accuracy"),
            "drop": group.get("drop"),
            "worst": group.get("name") == fairness.get("worst_group"),
        }
        for group in fairness.get("groups", [])
    ]


def _parity_row(stage: dict[str, Any]) -> dict[str, Any] | None:
    """The fairness evaluator's differences between groups, and their change from the baseline."""
    metrics = stage.get("metrics", {})
    if "fairness.demographic_parity_difference" not in metrics:
        return None
    names = ("accuracy_gap", "demographic_parity_difference", "equalized_odds_difference")
    row: dict[str, Any] = {"seed": stage["seed"], "stage": stage["name"]}
    for name in names:
        row[name] = metrics.get(f"fairness.{name}")
        row[f"{name}_change"] = metrics.get(f"fairness.{name}_change")
    return row


def _plots(data: ReportData) -> dict[str, str]:
    """Inline SVG plots, by name (a plot without data is left out)."""
    from compressgate.reports import figures as plots

    out: dict[str, str] = {}
    points = data.history
    if points:
        out["accuracy_vs_size"] = plots.accuracy_vs(points, "size")
        if any(p.latency_ms is not None for p in points):
            out["accuracy_vs_latency"] = plots.accuracy_vs(points, "latency")
    final = _final_evaluations(data)
    if final.get("calibration"):
        svg = plots.reliability_of(final["calibration"])
        if svg:
            out["reliability"] = svg
    if final.get("fairness"):
        out["groups"] = plots.group_changes(final["fairness"])
    if final.get("classes"):
        out["classes"] = plots.class_changes(final["classes"])
    if final.get("latency"):
        out["latency"] = plots.latency_of(final["latency"])
    return out


def _final_evaluations(data: ReportData) -> dict[str, Any]:
    stages = [s for s in data.run.get("stages", []) if s.get("status") == "done"]
    if not stages:
        return {}
    first_seed = stages[0]["seed"]
    mine = [s for s in stages if s["seed"] == first_seed]
    evaluations: dict[str, Any] = mine[-1].get("evaluations", {})
    return evaluations


# --- templates ---------------------------------------------------------------------------------


@cache
def _env() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("compressgate.reports", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = _md
    env.filters["text"] = _text
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["interval"] = _interval
    env.filters["size"] = _size
    return env


def _md(value: Any) -> str:
    """Text safe inside a Markdown table cell (and inert as HTML)."""
    text = str(value)
    for old, new in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(old, new)
    return " ".join(text.split())


def _text(value: Any) -> str:
    """Free text a person wrote (a recipe's description, a waiver's reason), on one line and
    literal in Markdown as the CI summary writes it (`gates.ci.inline_markdown`): inert as
    HTML, starting no link, image (`![x](https://tracker)` in a model card), emphasis or cell."""
    from compressgate.gates.ci import inline_markdown

    return inline_markdown(" ".join(str(value).split()), None)


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _num(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _interval(estimate: dict[str, Any] | None, percent: bool = False, signed: bool = False) -> str:
    if not estimate:
        return "–"
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    if percent:
        sign = "+" if signed else ""
        return (
            f"{estimate['estimate']:{sign}.2%} [{low:{sign}.1%}, {high:{sign}.1%}]"
            if low is not None and high is not None
            else f"{estimate['estimate']:{sign}.2%}"
        )
    return f"{estimate['estimate']:.4g} [{_num(low)}, {_num(high)}]"


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(n)
