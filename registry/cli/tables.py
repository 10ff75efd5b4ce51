"""How the commands print what the API returns: JSON, tables (rich) and one-line summaries.

Each printer takes the API's typed result (a run summary, gate decisions, a review, an alias
move, ...) and prints it the same way wherever it appears. rich, and the models the printers
take, are imported only when something is printed, so that importing the CLI stays light.

What a person supplied (a reason, an actor, a name, a path, a note) reaches the terminal only
through `shown`: every table cell is a rich `Text` of it (never markup, which would turn
`[link=…]` into a hyperlink escape; rich itself strips only a few control codes, not ESC), and
every plain line goes out through `say`. `--json` prints through `emit`: JSON with every
non-ASCII character and every control character escaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import click

from compressgate.registry.cli.options import json_printable, printable

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.table import Table
    from rich.text import Text

    from compressgate.evaluators.results import Estimate
    from compressgate.gates.review import ReviewStatus
    from compressgate.registry.catalog.records import (
        AnnotationRecord,
        Annotations,
        SearchPage,
        StageRecord,
    )
    from compressgate.registry.catalog.repository import AliasMove, JudgementRecord, RunListing
    from compressgate.registry.catalog.views import Diff
    from compressgate.registry.results import RunSummary


class _Interval(Protocol):
    """An estimate with its interval: a recorded `Estimate` or a run summary's metric."""

    @property
    def estimate(self) -> float: ...
    @property
    def ci_low(self) -> float: ...
    @property
    def ci_high(self) -> float: ...


def emit(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    """Print a result (or a list of them) as indented JSON: what every `--json` prints."""
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        payload = data
    else:
        payload = [item.model_dump(mode="json") for item in data]
    click.echo(json_printable(json.dumps(payload, indent=2)))


# --- what a person supplied ---------------------------------------------------------------------


def shown(value: object) -> str:
    """A value as a cell or a field of a line shows it: on one line, every character that
    would steer the terminal (ESC, CR, a bidi override, a line break) written as its escape."""
    return printable(str(value), one_line=True)


def say(line: str, *, err: bool = False) -> None:
    """Print one line holding text a person supplied (`shown`)."""
    click.echo(shown(line), err=err)


def inert(value: object, style: str = "") -> Text:
    """A table cell, title or header: `shown`, and never read as rich markup or emoji."""
    from rich.text import Text

    return Text(shown(value), style=style)


def add_row(table: Table, *cells: object) -> None:
    """Add a row whose every cell is `inert` (a `Text` already made is kept, with its style)."""
    from rich.text import Text

    table.add_row(*(c if isinstance(c, Text) else inert(c) for c in cells))


def new_table(*columns: object, title: object = None, right: tuple[str, ...] = ()) -> Table:
    """A rich table with these column headers (those in `right` right-aligned), each `inert`."""
    from rich.table import Table

    found = Table(title=None if title is None else inert(title))
    for column in columns:
        found.add_column(inert(column), justify="right" if column in right else "left")
    return found


def print_table(table: Table, width: int = 200) -> None:
    from rich.console import Console

    Console(width=width).print(table)


# --- numbers ------------------------------------------------------------------------------------


def size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def plain(metric: _Interval | None) -> str:
    """An estimate near 1 (a cosine, an agreement) with its interval, to four places."""
    if metric is None:
        return "-"
    return f"{metric.estimate:.4f} [{metric.ci_low:.4f}, {metric.ci_high:.4f}]"


def interval(metric: _Interval | None, *, signed: bool = False) -> str:
    if metric is None:
        return "-"
    sign = "+" if signed else ""
    return f"{metric.estimate:{sign}.2%} [{metric.ci_low:{sign}.1%}, {metric.ci_high:{sign}.1%}]"


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def opt(value: float | None) -> str:
    return "-" if value is None else number(value)


def cell(value: Any) -> str:
    """A diff cell: an [estimate, low, high] triple as `estimate [low, high]`, else as is."""
    if isinstance(value, list) and len(value) == 3 and all(isinstance(x, float) for x in value):
        return f"{number(value[0])} [{number(value[1])}, {number(value[2])}]"
    return "-" if value is None else str(value)


# --- runs ---------------------------------------------------------------------------------------


def stage_line(stage: StageRecord) -> None:
    """One line on stderr as each stage of a run finishes."""
    accuracy = stage.metrics.get("accuracy")
    cosine = stage.metrics.get("cosine.mean")
    score = (
        f"accuracy {accuracy.estimate:.2%} [{accuracy.ci_low:.2%}, {accuracy.ci_high:.2%}]"
        if accuracy
        else f"cosine {plain(cosine)}"
        if cosine
        else ""
    )
    how = "cached" if stage.cached else f"{stage.seconds:.1f} s"
    say(
        f"seed {stage.seed} · {stage.name} [{stage.kind}] {score} · "
        f"{size(stage.size_bytes)} · {how}",
        err=True,
    )


_Column = tuple[str, Callable[[Any], str]]


def _headline(summary: RunSummary) -> tuple[_Column, _Column]:
    """The two quality columns of the run table: accuracy and its paired change for a
    classifier; cosine to the baseline (mean, 1st percentile) for an embedding model."""

    def level(metric: str) -> str:
        """The intervals' two-sided level as recorded, e.g. `90% CI` (the evaluator's
        confidence c is the one-sided level of each end: 2c - 1 in all)."""
        found = [s.metrics[metric].confidence for s in summary.stages if metric in s.metrics]
        return f"{found[0]:.0%} CI" if found and len(set(found)) == 1 else "CI"

    if any("cosine.mean" in stage.metrics for stage in summary.stages):
        return (
            (
                f"cosine mean [{level('cosine.mean')}]",
                lambda s: plain(s.metrics.get("cosine.mean")),
            ),
            ("cosine p1 [CI]", lambda s: plain(s.metrics.get("cosine.p1"))),
        )
    return (
        (f"accuracy [{level('accuracy')}]", lambda s: interval(s.metrics.get("accuracy"))),
        (
            "Δ vs baseline [CI]",
            lambda s: interval(s.metrics.get("paired.accuracy_difference"), signed=True),
        ),
    )


def run_table(summary: RunSummary) -> None:
    """A run: every stage of every seed, the seeds' aggregate, the gate decisions, the status."""
    from compressgate.registry.catalog.repository import JudgementRecord

    (first, first_of), (second, second_of) = _headline(summary)
    table = new_table(
        "seed",
        "stage",
        "kind",
        "format",
        "size",
        "vs float ONNX",
        "params",
        "MACs",
        first,
        second,
        "time",
        "sha256",
        title=f"{summary.recipe.name} v{summary.recipe.version} · {summary.run_id}",
        right=("size", "params", "MACs"),
    )
    reference: dict[int, int] = {}
    for stage in summary.stages:
        if stage.kind == "baseline" and "onnx_size_bytes" in stage.details:
            reference[stage.seed] = stage.details["onnx_size_bytes"]
        ratio = reference.get(stage.seed)
        smaller = f"{ratio / stage.size_bytes:.1f}x smaller" if ratio and stage.size_bytes else "-"
        if stage.kind == "baseline" and ratio:
            smaller = f"is {size(ratio)}"
        add_row(
            table,
            stage.seed,
            stage.name,
            stage.kind,
            stage.format or "-",
            size(stage.size_bytes),
            smaller,
            f"{stage.params:,}" if stage.params is not None else "-",
            f"{stage.macs:,}" if stage.macs is not None else "-",
            first_of(stage),
            second_of(stage),
            "cached" if stage.cached else f"{stage.seconds:.1f} s",
            (stage.artifact_sha256 or "-")[:12],
        )
    print_table(table, 180)
    seeds_table(summary)
    decisions_table([JudgementRecord.model_validate(d) for d in summary.gates])
    say(f"status: {summary.status}; recorded in the catalog {summary.record}")
    for mismatch in summary.environment_mismatches:
        say(f"warning: environment differs from the lock: {mismatch}")


def seeds_table(summary: RunSummary) -> None:
    """Accuracy and its change over the seeds, per stage (mean, t interval, worst seed)."""
    if not summary.aggregate:
        return
    table = new_table(
        "stage",
        "accuracy",
        "worst",
        "Δ vs baseline",
        "worst Δ",
        "exemplars",
        title=f"over {len(summary.seeds)} seeds: mean with t interval, worst seed",
    )
    for name, metrics in summary.aggregate.items():
        cells = [name]
        for metric in ("accuracy", "paired.accuracy_difference"):
            value = metrics.get(metric)
            signed = "+" if metric != "accuracy" else ""
            cells += (
                [
                    f"{value.mean:{signed}.2%} [{value.ci_low:{signed}.1%}, "
                    f"{value.ci_high:{signed}.1%}]",
                    f"{value.worst:{signed}.2%} (seed {value.worst_seed})",
                ]
                if value is not None
                else ["-", "-"]
            )
        found = summary.exemplars.get(name)
        cells.append(f"{found['count']} of {found['n']}" if found else "-")
        add_row(table, *cells)
    print_table(table, 180)


def metric_table(metrics: Mapping[str, Estimate]) -> None:
    """Every metric of a variant with its interval, sample size and method."""
    table = new_table("metric", "estimate", "interval", "n", "method", right=("estimate", "n"))
    for name, m in metrics.items():
        bounds = (
            "exact"
            if m.method == "exact"
            else f"[{number(m.ci_low)}, {number(m.ci_high)}] ({m.confidence:.0%})"
        )
        add_row(table, name, f"{number(m.estimate)} {m.unit}".strip(), bounds, m.n, m.method)
    print_table(table)


def decisions_table(decisions: Sequence[JudgementRecord]) -> None:
    """The gate decisions, one row per gate and seed."""
    if not decisions:
        return
    table = new_table(
        "seed", "gate", "stage", "metric", "estimate", "interval", "verdict", "owner",
        title="gate decisions",
    )  # fmt: skip
    for d in decisions:
        low, high = d.ci_low, d.ci_high
        bounds = f"[{opt(low)}, {opt(high)}]" if low is not None or high is not None else "-"
        add_row(
            table,
            d.seed,
            d.gate,
            d.stage,
            d.metric,
            opt(d.estimate),
            bounds,
            f"{d.verdict} ({d.note})",
            d.owner,
        )
    print_table(table)


# --- reviews ------------------------------------------------------------------------------------


def power_lines(checks: list[dict[str, Any]]) -> None:
    for check in checks:
        if check.get("underpowered"):
            say(f"warning: gate '{check['gate']}' is underpowered: {check['message']}")


def review_table(found: ReviewStatus) -> None:
    """A run's review: each gate's decision, state and sign-offs, then the run's status."""
    table = new_table(
        "gate", "owner", "stage", "seeds", "estimate", "interval", "threshold", "n", "verdict",
        "state", "sign-off",
        title=f"review of {found.run_id} ({found.recipe} v{found.recipe_version}): {found.status}",
    )  # fmt: skip
    for gate in found.gates:
        d = gate.decision
        signed = [
            f"{s.kind} by {s.owner}" + ("" if s.counts else f" (void: {s.problem})")
            for s in gate.signoffs
        ]
        low = "" if d.ci_low is None else f"{d.ci_low:.4g}"
        high = "" if d.ci_high is None else f"{d.ci_high:.4g}"
        add_row(
            table,
            d.gate,
            d.owner,
            d.stage,
            d.policy,
            "-" if d.estimate is None else f"{d.estimate:.4g}",
            f"[{low}, {high}]" if low or high else "-",
            "-" if d.threshold is None else f"{d.threshold:.4g}",
            "-" if d.n is None else d.n,
            d.verdict,
            gate.state,
            "; ".join(signed) or "-",
        )
    print_table(table)
    for name in found.not_reached:
        say(f"gate '{name}': not judged, the pipeline stopped before its stage")
    for reason in found.reasons:
        say(f"- {reason}")
    say(f"status: {found.status}")


# --- the catalog --------------------------------------------------------------------------------


def runs_table(runs: Sequence[RunListing]) -> None:
    """`catalog list`: one row per run."""
    table = new_table("run", "recipe", "status", "started", "seeds", "signers", "recipe sha256")
    for r in runs:
        add_row(
            table,
            r.run_id,
            f"{r.recipe} v{r.version}",
            r.status,
            r.started_at,
            ",".join(map(str, r.seeds)),
            ", ".join(r.signers),
            r.recipe_sha256[:12],
        )
    print_table(table)


def diff_tables(found: Diff) -> None:
    """`catalog diff`: identity, configuration and metrics of two variants side by side."""
    for title, rows in (
        ("identity", found.identity),
        ("configuration", found.config),
        ("metrics: estimate [interval]", found.metrics),
    ):
        table = new_table("", found.a, found.b, title=title)
        for line in rows:
            key = inert(line.key, style="" if line.same else "bold")
            add_row(table, key, cell(line.a), cell(line.b))
        print_table(table)


def move_line(move: AliasMove) -> str:
    """One alias move: number, time, action, target, previous target, who and why (`shown`)."""
    previous = f" (was {move.previous_variant_id})" if move.previous_variant_id else ""
    signed = (
        f" (signed, key {move.release.keyid[:12]}…, policy v{move.release.policy_version})"
        if move.release is not None
        else ""
    )
    return shown(
        f"#{move.seq} {move.moved_at} {move.action} {move.alias} -> {move.variant_id} "
        f"[{move.artifact_sha256[:12]}]{previous} by {move.actor}{signed}: {move.reason}"
    )


def annotation_line(note: AnnotationRecord) -> str:
    """One tag or description event: number, time, what changed, on what, who (`shown`)."""
    if note.kind == "description":
        what = "description cleared" if note.value is None else f"description: {note.value}"
    else:
        what = f"tag {note.key} removed" if note.value is None else f"tag {note.key}={note.value}"
    signed = (
        f" (signed, key {note.keyid[:12]}…, policy v{note.policy_version})"
        if note.keyid is not None
        else ""
    )
    return shown(
        f"#{note.seq} {note.recorded_at} {what} on {note.subject_kind} {note.subject_id} "
        f"by {note.actor}{signed}"
    )


def tags_text(tags: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in tags.items()) or "-"


def annotations_lines(notes: Annotations, indent: str = "  ") -> None:
    """A subject's tags and description now, and the events that made them."""
    if not notes.history:
        return
    say(f"{indent}tags: {tags_text(notes.tags)}")
    if notes.description is not None:
        say(f"{indent}description: {notes.description}")
    for note in notes.history:
        click.echo(f"{indent}  {annotation_line(note)}")


def search_lines(page: SearchPage) -> None:
    """Each variant found on two lines, then how many, and the next page's token."""
    for hit in page.results:
        say(
            f"{hit.id} [{hit.kind}] {hit.artifact_sha256[:12]} {hit.recipe} v{hit.recipe_version}"
            f" · {hit.recorded_at} · {size(hit.size_bytes)}"
        )
        extra = f"  aliases: {', '.join(hit.aliases) or '-'} · tags: {tags_text(hit.tags)}"
        say(extra + (f" · {hit.description}" if hit.description else ""))
    if not page.results:
        say(f"no variant matches {page.query or 'the empty query'}")
        return
    count = len(page.results)
    noun = "variant" if count == 1 else "variants"
    if page.next_page_token is None:
        say(f"{count} {noun} ({page.sort})")
    else:
        say(f"{count} {noun} ({page.sort}); next page: --page-token {page.next_page_token}")
