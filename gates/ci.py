"""What `compressgate ci` reports: JUnit XML for CI test views, a Markdown step summary, and one
exit code for a batch of recipes.

JUnit XML: one `<testsuite>` per recipe, one `<testcase>` per gate.

| gate state | testcase |
|---|---|
| passed, approved | passing; `<system-out>` gives the evidence (and who approved) |
| waived | passing; `<system-out>` says who waived it, why and until when |
| awaiting-approval | passing; `<system-out>` names the owner whose approval it awaits |
| failed | `<failure>` whose message gives estimate, interval, threshold, n, seeds, note |

A recipe that could not be run is one testcase named `recipe` with an `<error>`. A rejected run
with no failed gate (the run failed, or a waived gate stopped the pipeline) gets a failing
testcase named `run`, so the test view never shows green for a rejected run. Every testcase
carries its `state` as a property; a suite carries the run's `status`, `stopped_after`,
`cached` and `underpowered` flags. No `time` or `timestamp`: the same results give the same bytes.

The Markdown summary is GitHub-flavoured: user text is escaped in table cells and list items,
long notes are truncated, and the whole stays under GitHub's 1 MiB step-summary cap.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from compressgate.gates.review import GateDecision, GateReview, ReviewStatus, Signoff
from compressgate.registry.kernel.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REJECTED,
    CompressgateError,
)

# Worst first: a broken signature says more than anything a run could show (integrity first),
# an environment mismatch invalidates every result, then inputs that could not be read (not
# found, bad input), then a rejected review.
EXIT_PRECEDENCE: tuple[int, ...] = (
    EXIT_INTEGRITY,
    EXIT_ENVIRONMENT,
    EXIT_NOT_FOUND,
    EXIT_BAD_INPUT,
    EXIT_REJECTED,
    EXIT_OK,
)
EXIT_MEANINGS: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_REJECTED: "rejected",
    EXIT_BAD_INPUT: "bad input",
    EXIT_INTEGRITY: "integrity error",
    EXIT_NOT_FOUND: "not found",
    EXIT_ENVIRONMENT: "environment mismatch",
}
NOTE_LIMIT = 300  # characters of a note or reason shown in the Markdown summary
SUMMARY_LIMIT = 1_000_000  # bytes; GitHub caps a step summary at 1 MiB


class CiResult(BaseModel):
    """One recipe checked by `compressgate ci`: its review, or the error that stopped it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="the recipe file as given or found")
    recipe: str | None = Field(default=None, description="name@version when known")
    review: ReviewStatus | None = Field(
        default=None, description="None when the recipe could not be run"
    )
    exit_code: int = Field(
        ge=0,
        le=5,
        description="0 ok, 1 gate failed / rejected, 2 bad input, 3 integrity, 4 not found, "
        "5 environment mismatch",
    )
    error: str | None = Field(default=None, description="the one-line error when review is None")
    cached: bool = Field(
        default=False, description="the run was reused (same recipe digest and environment)"
    )
    run_id: str | None = None
    underpowered: list[str] = Field(
        default_factory=list, description="one line per gate flagged underpowered"
    )

    @classmethod
    def of_review(cls, path: Path, review: ReviewStatus, *, cached: bool, run_id: str) -> CiResult:
        """A recipe that ran (or whose run was reused): its review, and the gates flagged
        underpowered."""
        return cls(
            path=str(path),
            recipe=f"{review.recipe}@{review.recipe_version}",
            review=review,
            exit_code=review.exit_code,
            cached=cached,
            run_id=run_id,
            underpowered=[
                f"{g.decision.gate}: {g.decision.power['message']}"
                for g in review.gates
                if g.decision.power and g.decision.power.get("underpowered")
            ],
        )

    @classmethod
    def of_error(cls, path: Path, error: CompressgateError) -> CiResult:
        """A recipe that could not be run: the error's exit code and its text on one line."""
        text = " ".join(str(error).split()) or type(error).__name__
        return cls(path=str(path), exit_code=error.exit_code, error=text)

    def label(self) -> str:
        """name@version, from the result or its review; else the path."""
        if self.recipe:
            return self.recipe
        if self.review is not None:
            return f"{self.review.recipe}@{self.review.recipe_version}"
        return self.path

    def marker(self) -> str:
        """approved, rejected, awaiting approval, or the kind of error that stopped the recipe."""
        if self.review is None or self.error is not None:
            return _error_kind(self.exit_code)
        return self.review.status.replace("-", " ")


def _error_kind(code: int) -> str:
    return EXIT_MEANINGS[code] if code > EXIT_REJECTED else "error"


def exit_code(results: Sequence[CiResult]) -> int:
    """The worst exit code of `results` by `EXIT_PRECEDENCE`: 3 > 5 > 4 > 2 > 1 > 0.

    Integrity comes first: a tampered recipe must not hide behind another recipe's mismatch.
    No results give 0 (the caller decides whether finding no recipe is an error).
    """
    codes = {r.exit_code for r in results}
    return next((code for code in EXIT_PRECEDENCE if code in codes), EXIT_OK)


# --- evidence, in words ------------------------------------------------------------------------


def _number(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _level(decision: GateDecision) -> str:
    """The interval's confidence level from the gate's rule, e.g. `90%`; "" when unknown."""
    confidence = decision.rule.get("confidence")
    if not isinstance(confidence, int | float):
        return ""
    # Every rule at one-sided confidence c reads an end of the two-sided 2c-1 interval.
    level = 2 * confidence - 1
    return f"{level:.0%}"


def interval_label(decision: GateDecision) -> str:
    """The decision's interval with its level, e.g. `90% interval [-0.0502, ]`."""
    interval = decision.interval()
    if not interval:
        return "interval n/a"
    return f"{_level(decision)} interval {interval}".lstrip()


def evidence(decision: GateDecision) -> str:
    """One line: metric, estimate, interval, threshold, n, seeds policy and the rule's note."""
    return (
        f"{decision.metric}: estimate {_number(decision.estimate)}, {interval_label(decision)}, "
        f"threshold {_number(decision.threshold)}, n {_number(decision.n)}, "
        f"seeds {decision.policy} — {decision.note}"
    )


def _signoff_line(signoff: Signoff) -> str:
    what = "waived" if signoff.kind == "waiver" else "approved"
    line = f"{what} by {signoff.owner} (key {signoff.keyid}, signed {signoff.signed_at})"
    if signoff.kind == "waiver":
        line += f": {signoff.reason or 'no reason given'}; until {signoff.expires or 'no expiry'}"
    elif signoff.reason:
        line += f": {signoff.reason}"
    if not signoff.counts:
        line = f"a signed {signoff.kind} does not count ({signoff.problem or 'invalid'}): {line}"
    return line


def _seed_line(gate: GateReview, index: int) -> str:
    s = gate.decision.seeds[index]
    low = "" if s.ci_low is None else f"{s.ci_low:.4g}"
    high = "" if s.ci_high is None else f"{s.ci_high:.4g}"
    interval = f"[{low}, {high}]" if s.ci_low is not None or s.ci_high is not None else "n/a"
    return (
        f"seed {s.seed} (variant {s.variant_id}): {s.verdict}, estimate {_number(s.estimate)}, "
        f"interval {interval}, threshold {_number(s.threshold)}, n {_number(s.n)} — {s.note}"
    )


def _stopped_here(review: ReviewStatus, gate: GateReview) -> bool:
    return review.stopped_after is not None and gate.decision.stage == review.stopped_after


# --- JUnit XML ---------------------------------------------------------------------------------

# Characters XML 1.0 cannot carry even escaped (C0 controls but tab/newline/return, lone
# surrogates, U+FFFE/U+FFFF): shown as \xNN / \uNNNN instead of producing ill-formed XML.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    def visible(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _NOT_XML.sub(visible, text)


def _properties(parent: ET.Element, pairs: Sequence[tuple[str, str]]) -> None:
    if pairs:
        holder = ET.SubElement(parent, "properties")
        for name, value in pairs:
            ET.SubElement(holder, "property", name=name, value=_xml(value))


def _text(parent: ET.Element, tag: str, lines: Sequence[str]) -> None:
    # XML parsers turn \r\n and \r in text into \n; normalise first so the text round-trips.
    body = "\n".join(lines).replace("\r\n", "\n").replace("\r", "\n")
    ET.SubElement(parent, tag).text = _xml(body)


class _Suite:
    """A `<testsuite>` being built, with its counts."""

    def __init__(self, result: CiResult) -> None:
        name = f"compressgate: {result.label()}"
        if result.label() != result.path:
            name += f" ({result.path})"
        self.element = ET.Element("testsuite", name=_xml(name))
        self.classname = _xml(f"compressgate.{result.label()}")
        self.tests = self.failures = self.errors = self.skipped = 0

    def case(self, name: str, state: Sequence[tuple[str, str]] = ()) -> ET.Element:
        self.tests += 1
        case = ET.Element("testcase", classname=self.classname, name=_xml(name))
        _properties(case, state)
        return case

    def fail(self, case: ET.Element, message: str, kind: str, detail: Sequence[str]) -> None:
        self.failures += 1
        failure = ET.SubElement(case, "failure", message=_xml(message), type=_xml(kind))
        failure.text = _xml("\n".join(detail))

    def skip(self, case: ET.Element, message: str) -> None:
        self.skipped += 1
        ET.SubElement(case, "skipped", message=_xml(message))

    def error(self, case: ET.Element, message: str, kind: str, detail: str) -> None:
        self.errors += 1
        ET.SubElement(case, "error", message=_xml(message), type=_xml(kind)).text = _xml(detail)


def _gate_case(suite: _Suite, review: ReviewStatus, gate: GateReview) -> ET.Element:
    d = gate.decision
    state = [
        ("state", gate.state),
        ("owner", d.owner),
        ("metric", d.metric),
        ("stage", d.stage),
        ("rule", str(d.rule.get("rule", ""))),
        ("seeds", d.policy),
    ]
    case = suite.case(d.gate, state)
    line = evidence(d)
    signoffs = [_signoff_line(s) for s in gate.signoffs]
    if gate.state == "failed":
        message = line
        if _stopped_here(review, gate):
            message += f"; stopped the pipeline after stage '{review.stopped_after}'"
        detail = [
            f"gate '{d.gate}' ({d.stage}) failed; its owner '{d.owner}' may waive it",
            *(_seed_line(gate, i) for i in range(len(d.seeds))),
            *signoffs,
        ]
        suite.fail(case, message, str(d.rule.get("rule", "gate")), detail)
        return case
    out = [line]
    if gate.state == "awaiting-approval":
        out.append(f"awaits the signed approval of {d.owner}")
    elif gate.state == "waived":
        out.append(f"failed, waived by its owner {d.owner}")
        if _stopped_here(review, gate):
            out.append(f"stopped the pipeline after stage '{review.stopped_after}'")
    _text(case, "system-out", [*out, *signoffs])
    return case


def _suite(result: CiResult) -> ET.Element:
    suite = _Suite(result)
    review = result.review
    props = [("path", result.path)]
    if result.label() != result.path:
        props.append(("recipe", result.label()))
    if review is not None:
        props += [
            ("status", review.status),
            ("run_id", result.run_id or review.run_id),
            ("run_status", review.run_status),
            ("recipe_sha256", review.recipe_sha256),
        ]
        if review.stopped_after is not None:
            props.append(("stopped_after", review.stopped_after))
    else:
        props.append(("status", "error"))
        if result.run_id is not None:
            props.append(("run_id", result.run_id))
    props += [("exit_code", str(result.exit_code)), ("cached", str(result.cached).lower())]
    props += [("underpowered", line) for line in result.underpowered]
    _properties(suite.element, props)

    cases: list[ET.Element] = []
    if review is None or result.error is not None:
        case = suite.case("recipe", [("state", "error")])
        kind = _error_kind(result.exit_code)
        message = result.error or f"the recipe could not be run ({kind})"
        suite.error(case, message, kind, f"exit {result.exit_code}")
        cases.append(case)
    if review is not None:
        cases += [_gate_case(suite, review, gate) for gate in review.gates]
        for name in review.not_reached:  # a gate the pipeline never reached: skipped, and why
            case = suite.case(name, [("state", "not-reached")])
            where = f" after stage '{review.stopped_after}'" if review.stopped_after else ""
            suite.skip(case, f"not judged: the pipeline stopped{where} before this gate's stage")
            cases.append(case)
        run_failed = review.run_status not in ("succeeded", "stopped")
        no_failed_gate = all(g.state != "failed" for g in review.gates)
        if run_failed or (review.status == "rejected" and no_failed_gate):
            case = suite.case("run", [("state", review.status), ("run_status", review.run_status)])
            reasons = review.reasons or [f"the run is {review.status} ({review.run_status})"]
            suite.fail(case, "; ".join(reasons), "rejected", reasons)
            cases.append(case)
    suite.element.extend(cases)
    suite.element.set("tests", str(suite.tests))
    suite.element.set("failures", str(suite.failures))
    suite.element.set("errors", str(suite.errors))
    suite.element.set("skipped", str(suite.skipped))
    lines = [*(f"reason: {r}" for r in review.reasons)] if review is not None else []
    lines += [f"underpowered: {u}" for u in result.underpowered]
    if result.cached:
        lines.append("the run was reused: same recipe digest and environment")
    if lines:
        _text(suite.element, "system-out", lines)
    return suite.element


def junit_xml(results: Sequence[CiResult]) -> bytes:
    """The results as JUnit XML (UTF-8, with declaration): the same results give the same bytes."""
    suites = [_suite(r) for r in results]
    totals = {
        key: str(sum(int(s.get(key, "0")) for s in suites))
        for key in ("tests", "failures", "errors", "skipped")
    }
    root = ET.Element("testsuites", {"name": "compressgate ci", **totals})
    root.extend(suites)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


# --- Markdown ----------------------------------------------------------------------------------

_MD_PUNCTUATION = re.compile(r"([\\`*_\[\]|~#])")
_LINE_START = re.compile(r"^(\d+)([.)])|^([-+=])")


def _escape_marker(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return f"{match.group(1)}\\{match.group(2)}"
    return "\\" + match.group(3)


def inline_markdown(text: str, limit: int | None = NOTE_LIMIT) -> str:
    """`text` as inline GitHub Markdown, literal: safe in a table cell or a list item (no
    link, image, emphasis, code, heading or HTML it could start; a line break is `<br>`)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_PUNCTUATION.sub(r"\\\1", text)
    # A leading "1." or "-" would start a nested list inside a list item.
    text = _LINE_START.sub(_escape_marker, text)
    return text.replace("\n", "<br>")


_md = inline_markdown


def _gates_table(review: ReviewStatus) -> list[str]:
    header = ("gate", "owner", "state", "estimate", "interval", "threshold", "n", "note")
    rows = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    for gate in review.gates:
        d = gate.decision
        state = f"**{gate.state}**" if gate.state == "failed" else gate.state
        note = f"seeds {d.policy}: {d.note}"
        counting = [s for s in gate.signoffs if s.counts]
        if gate.state in ("waived", "approved") and counting:
            state += f" by {_md(', '.join(dict.fromkeys(s.owner for s in counting)))}"
        for waiver in (s for s in counting if s.kind == "waiver" and gate.state == "waived"):
            note += f"; waived: {waiver.reason or 'no reason given'}"
            note += f" (until {waiver.expires or 'no expiry'})"
        interval = f"{_level(d)} {d.interval()}".strip() if d.interval() else ""
        cells = (
            _md(d.gate),
            _md(d.owner),
            state,
            _number(d.estimate),
            _md(interval),
            _number(d.threshold),
            _number(d.n),
            _md(note),
        )
        rows.append(f"| {' | '.join(cells)} |")
    return rows


def _section(result: CiResult) -> list[str]:
    review = result.review
    assert review is not None
    facts = [
        _md(result.path, None),
        f"run {_md(result.run_id or review.run_id, None)}",
    ]
    if result.cached:
        facts.append("reused from a cached run (same recipe digest and environment)")
    if review.stopped_after is not None:
        facts.append(f"stopped after stage {_md(review.stopped_after, None)}")
    lines = [
        f"### {_md(result.label(), None)}: **{result.marker()}**",
        "",
        " · ".join(facts),
        "",
    ]
    if review.gates:
        lines += [*_gates_table(review), ""]
    if review.reasons:
        lines += ["Reasons:", "", *(f"- {_md(r)}" for r in review.reasons), ""]
    if result.underpowered:
        lines += [
            "Underpowered:",
            "",
            *(f"- {_md(u)}" for u in result.underpowered),
            "",
        ]
    return lines


def _overview(result: CiResult) -> str:
    head = f"- **{result.marker()}**: {_md(result.label(), None)}"
    if result.label() != result.path:
        head += f" ({_md(result.path, None)})"
    review = result.review
    if result.error is not None or review is None:
        return f"{head}, exit {result.exit_code}: {_md(result.error or 'could not be run')}"
    failed = sum(g.state == "failed" for g in review.gates)
    waiting = sum(g.state == "awaiting-approval" for g in review.gates)
    counts = [f"{len(review.gates)} gate{'s' if len(review.gates) != 1 else ''}"]
    counts += [f"{failed} failed"] if failed else []
    counts += [f"{waiting} awaiting approval"] if waiting else []
    counts += ["cached"] if result.cached else []
    counts += [f"{len(result.underpowered)} underpowered"] if result.underpowered else []
    return f"{head}: {', '.join(counts)}"


def markdown_summary(results: Sequence[CiResult]) -> str:
    """The results as a GitHub step summary: an overview line per recipe, then per recipe its
    gates table, reasons and underpowered flags. Stays under GitHub's 1 MiB cap."""
    code = exit_code(results)
    head = [
        f"## compressgate ci: exit {code} ({EXIT_MEANINGS[code]})",
        "",
        f"{len(results)} recipe{'s' if len(results) != 1 else ''} checked.",
        "",
    ]
    # The overview lines come first, each on its own, so truncation keeps as many as fit.
    blocks = [[_overview(r)] for r in results] + [[""]]
    blocks += [_section(r) for r in results if r.review is not None and r.error is None]
    out = list(head)
    used = sum(len(line.encode()) + 1 for line in out)
    for index, block in enumerate(blocks):
        size = sum(len(line.encode()) + 1 for line in block)
        if used + size > SUMMARY_LIMIT - 200:
            out.append(
                f"*Summary truncated at {SUMMARY_LIMIT:,} bytes: {len(blocks) - index} "
                "section(s) left out; the JUnit report has every gate.*"
            )
            break
        out += block
        used += size
    return "\n".join(out).rstrip("\n") + "\n"
