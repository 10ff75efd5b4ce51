"""`compressgate ci` reports: JUnit XML read back by junitparser, Markdown parsed as GFM tables by
markdown-it-py, and the exit-code precedence."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, Failure, JUnitXml, TestCase, TestSuite
from markdown_it import MarkdownIt

from compressgate.gates.ci import CiResult, exit_code, junit_xml, markdown_summary
from compressgate.gates.review import (
    GateDecision,
    GateReview,
    GateState,
    ReviewStatus,
    SeedJudgement,
    Signoff,
)

HOSTILE = "<script>alert('x')</script> ]]> & \"quoted\" a|b\nsecond line \\ *bold* [link](x)"
SHA = "ab" * 32


def seed(seed: int, verdict: str, estimate: float, low: float | None, note: str) -> SeedJudgement:
    return SeedJudgement(
        seed=seed,
        variant_id=f"v-{seed}",
        artifact_sha256=SHA,
        verdict="pass" if verdict == "pass" else "fail",
        estimate=estimate,
        ci_low=low,
        ci_high=None,
        n=450,
        threshold=-0.02,
        note=note,
    )


def decision(gate: str, *, verdict: str = "pass", **fields: Any) -> GateDecision:
    defaults: dict[str, Any] = {
        "run_id": "run-1",
        "gate": gate,
        "owner": "ml-lead",
        "metric": gate,
        "stage": "quantize",
        "rule": {"rule": "bound", "name": gate, "confidence": 0.95, "max": 2.0},
        "policy": "every",
        "approval": "none",
        "estimate": 1.52,
        "ci_low": 1.48,
        "ci_high": 1.57,
        "n": 200,
        "threshold": 2.0,
        "verdict": "pass" if verdict == "pass" else "fail",
        "note": "3/3 seeds pass; seed 0: interval within the bound",
        "seeds": [],
    }
    return GateDecision(**{**defaults, **fields})


ACCURACY = decision(
    "accuracy",
    verdict="fail",
    metric="accuracy",
    rule={"rule": "non_inferior", "name": "accuracy", "confidence": 0.95, "margin": 0.02},
    estimate=-0.0311,
    ci_low=-0.0502,
    ci_high=None,
    n=450,
    threshold=-0.02,
    note="2/3 seeds pass; seed 1: lower bound -0.0502 of the paired difference "
    "(90% Tango interval) vs -0.02",
    seeds=[
        seed(0, "pass", -0.004, -0.0171, "lower bound -0.0171 vs -0.02"),
        seed(1, "fail", -0.0311, -0.0502, "lower bound -0.0502 vs -0.02"),
        seed(2, "pass", 0.0, -0.0132, "lower bound -0.0132 vs -0.02"),
    ],
)
FAIRNESS = decision(
    "fairness",
    verdict="fail",
    owner="responsible-ai",
    metric="fairness.dp_difference",
    rule={"rule": "relative", "name": "fairness", "confidence": 0.9, "max_increase": 0.01},
    estimate=0.043,
    ci_low=0.031,
    ci_high=0.055,
    n=1000,
    threshold=0.01,
    note="3/3 seeds pass; seed 2: increase 0.0183 > max_increase 0.01",
)
LATENCY = decision("latency", approval="required", owner="serving", metric="latency.p95_ms")
WAIVER = Signoff(
    id="cd" * 32,
    kind="waiver",
    gate="fairness",
    owner="responsible-ai",
    keyid="key-rai-1",
    verdict="fail",
    reason="subgroup audit RAI-42 accepts the gap until retraining",
    expires="2026-12-31T00:00:00+00:00",
    signed_at="2026-06-01T09:30:00+00:00",
)


def status(
    gates: list[tuple[GateDecision, GateState, list[Signoff]]],
    *,
    status: str = "rejected",
    reasons: list[str] | None = None,
    run_status: str = "succeeded",
    stopped_after: str | None = None,
) -> ReviewStatus:
    return ReviewStatus(
        run_id="run-1",
        recipe="mnist-small",
        recipe_version=3,
        recipe_sha256=SHA,
        run_status=run_status,
        status="rejected" if status == "rejected" else "approved",
        stopped_after=stopped_after,
        gates=[GateReview(decision=d, state=s, signoffs=o) for d, s, o in gates],
        reasons=reasons or [],
    )


REJECTED = CiResult(
    path="recipes/mnist.yaml",
    recipe="mnist-small@3",
    review=status(
        [
            (decision("size"), "passed", []),
            (ACCURACY, "failed", []),
            (FAIRNESS, "waived", [WAIVER]),
            (LATENCY, "awaiting-approval", []),
        ],
        reasons=[
            "gate 'accuracy' failed (2/3 seeds pass); its owner 'ml-lead' may waive it",
            "gate 'latency' awaits the signed approval of 'serving'",
        ],
    ),
    exit_code=1,
    run_id="run-1",
    underpowered=["accuracy: power 0.41 at n=450 < planned 0.8; about 1100 samples needed"],
)
APPROVED = CiResult(
    path="recipes/cifar.yaml",
    review=status([(decision("size"), "passed", [])], status="approved").model_copy(
        update={"recipe": "cifar-tiny", "recipe_version": 1}
    ),
    exit_code=0,
    cached=True,
    run_id="run-0",
)
TAMPERED = CiResult(
    path="recipes/tampered.yaml",
    exit_code=3,
    error="recipes/tampered.yaml: the signature by key 'ml-lead-1' does not verify",
)
RESULTS = [REJECTED, APPROVED, TAMPERED]


def read_back(tmp_path: Path, results: list[CiResult]) -> list[TestSuite]:
    path = tmp_path / "junit.xml"
    path.write_bytes(junit_xml(results))
    return list(JUnitXml.fromfile(str(path)))


def cases(suite: TestSuite) -> dict[str, TestCase]:
    return {case.name: case for case in suite}


def properties(element: TestCase | TestSuite) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in element._elem.iter("property")}


# --- JUnit ---------------------------------------------------------------------------------------


def test_junit_has_a_suite_per_recipe_and_a_case_per_gate(tmp_path: Path) -> None:
    suites = read_back(tmp_path, RESULTS)
    assert [s.name for s in suites] == [
        "compressgate: mnist-small@3 (recipes/mnist.yaml)",
        "compressgate: cifar-tiny@1 (recipes/cifar.yaml)",
        "compressgate: recipes/tampered.yaml",
    ]
    assert list(cases(suites[0])) == ["size", "accuracy", "fairness", "latency"]
    assert {c.classname for c in suites[0]} == {"compressgate.mnist-small@3"}
    counts = [(s.tests, s.failures, s.errors, s.skipped) for s in suites]
    assert counts == [(4, 1, 0, 0), (1, 0, 0, 0), (1, 0, 1, 0)]
    assert properties(suites[0])["status"] == "rejected"
    assert properties(suites[1])["cached"] == "true"


def test_root_counts_are_the_sum_of_the_suites(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_bytes(junit_xml(RESULTS))
    root = JUnitXml.fromfile(str(path))
    assert (root.tests, root.failures, root.errors, root.skipped) == (6, 1, 1, 0)
    assert b"time=" not in path.read_bytes()


def test_failed_gate_message_gives_estimate_interval_threshold_n_and_seeds(
    tmp_path: Path,
) -> None:
    accuracy = cases(read_back(tmp_path, [REJECTED])[0])["accuracy"]
    [failure] = accuracy.result
    assert isinstance(failure, Failure)
    assert failure.message == (
        "accuracy: estimate -0.0311, 90% interval [-0.0502, ], threshold -0.02, n 450, "
        "seeds every — 2/3 seeds pass; seed 1: lower bound -0.0502 of the paired difference "
        "(90% Tango interval) vs -0.02"
    )
    assert failure.type == "non_inferior"
    assert "seed 1 (variant v-1): fail" in (failure.text or "")
    assert properties(accuracy)["state"] == "failed"


def test_passed_gate_is_a_passing_case_with_its_evidence(tmp_path: Path) -> None:
    size = cases(read_back(tmp_path, [REJECTED])[0])["size"]
    assert size.is_passed
    assert (size.system_out or "").startswith("size: estimate 1.52, 90% interval [1.48, 1.57]")


def test_waived_gate_passes_and_says_who_why_and_until_when(tmp_path: Path) -> None:
    fairness = cases(read_back(tmp_path, [REJECTED])[0])["fairness"]
    assert fairness.is_passed
    out = fairness.system_out or ""
    assert "waived by responsible-ai (key key-rai-1, signed 2026-06-01T09:30:00+00:00)" in out
    assert "subgroup audit RAI-42" in out and "until 2026-12-31T00:00:00+00:00" in out
    assert properties(fairness)["state"] == "waived"


def test_awaiting_approval_gate_passes_and_names_the_owner(tmp_path: Path) -> None:
    latency = cases(read_back(tmp_path, [REJECTED])[0])["latency"]
    assert latency.is_passed
    assert "awaits the signed approval of serving" in (latency.system_out or "")
    assert properties(latency)["state"] == "awaiting-approval"


def test_a_recipe_that_could_not_run_is_one_error_case(tmp_path: Path) -> None:
    [suite] = read_back(tmp_path, [TAMPERED])
    [case] = list(suite)
    assert (case.name, case.classname) == ("recipe", "compressgate.recipes/tampered.yaml")
    [error] = case.result
    assert isinstance(error, Error)
    assert error.message == TAMPERED.error
    assert error.type == "integrity error"
    assert properties(suite)["exit_code"] == "3"


def test_a_stopped_pipeline_is_a_suite_property_and_in_the_failing_message(
    tmp_path: Path,
) -> None:
    stopped = ACCURACY.model_copy(update={"stage": "prune"})
    result = CiResult(
        path="r.yaml",
        review=status([(stopped, "failed", [])], run_status="stopped", stopped_after="prune"),
        exit_code=1,
    )
    [suite] = read_back(tmp_path, [result])
    assert properties(suite)["stopped_after"] == "prune"
    [failure] = cases(suite)["accuracy"].result
    assert failure.message.endswith("; stopped the pipeline after stage 'prune'")


def test_a_rejected_run_without_a_failed_gate_gets_a_failing_run_case(tmp_path: Path) -> None:
    reason = "the pipeline stopped after stage 'prune': a gate failed there"
    result = CiResult(
        path="r.yaml",
        review=status(
            [(FAIRNESS.model_copy(update={"stage": "prune"}), "waived", [WAIVER])],
            run_status="stopped",
            stopped_after="prune",
            reasons=[reason],
        ),
        exit_code=1,
    )
    [suite] = read_back(tmp_path, [result])
    assert (suite.tests, suite.failures) == (2, 1)
    [failure] = cases(suite)["run"].result
    assert failure.message == reason


def test_junit_bytes_are_deterministic() -> None:
    first = junit_xml(RESULTS)
    assert first == junit_xml([r.model_copy(deep=True) for r in RESULTS])
    assert first.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<testsuites")


def hostile_result(text: str) -> CiResult:
    return CiResult(
        path="recipes/hostile.yaml",
        review=status(
            [(ACCURACY.model_copy(update={"note": text}), "failed", [])],
            reasons=[f"gate 'accuracy' failed ({text})"],
        ),
        exit_code=1,
        underpowered=[text],
    )


@pytest.mark.parametrize("text", [HOSTILE, "<![CDATA[x]]>", "&amp; &#10; &lt;", "'\"\t"])
def test_hostile_notes_survive_the_xml_round_trip(tmp_path: Path, text: str) -> None:
    [suite] = read_back(tmp_path, [hostile_result(text)])
    [failure] = cases(suite)["accuracy"].result
    assert failure.message.endswith(f"— {text}")
    assert properties(suite)["underpowered"] == text
    assert f"reason: gate 'accuracy' failed ({text})" in (suite._elem.findtext("system-out") or "")


def test_characters_xml_cannot_carry_are_shown_not_dropped(tmp_path: Path) -> None:
    [suite] = read_back(tmp_path, [hostile_result("bell\x07 escape\x1b nul\x00 \ufffe")])
    [failure] = cases(suite)["accuracy"].result
    assert failure.message.endswith("bell\\x07 escape\\x1b nul\\x00 \\ufffe")


# --- exit code -----------------------------------------------------------------------------------


def result_exiting(code: int) -> CiResult:
    return CiResult(path=f"r{code}.yaml", exit_code=code, error=None if code < 2 else "e")


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], 0),
        ([0, 0], 0),
        ([0, 1], 1),
        ([1, 2], 2),
        ([2, 4], 4),
        ([1, 2, 5], 5),
        ([5, 3, 2, 1], 3),
        ([0, 3], 3),
    ],
)
def test_the_worst_exit_code_wins_integrity_first(codes: list[int], expected: int) -> None:
    assert exit_code([result_exiting(c) for c in codes]) == expected


def test_exit_codes_are_those_of_the_error_tree() -> None:
    with pytest.raises(ValueError, match="less than or equal to 5"):
        CiResult(path="r.yaml", exit_code=7)


# --- Markdown ------------------------------------------------------------------------------------


def tables(markdown: str) -> list[list[list[str]]]:
    """Each GFM table as rows of cell texts (the header row first), as GitHub would parse it."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    found: list[list[list[str]]] = []
    row: list[str] | None = None
    for token in tokens:
        if token.type == "table_open":
            found.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close" and row is not None:
            found[-1].append(row)
            row = None
    return found


def rendered_cells(markdown: str) -> list[list[str]]:
    """The rendered HTML of each body row's cells, of the first table."""
    html = MarkdownIt("commonmark").enable("table").render(markdown)
    body = html.split("<tbody>", 1)[1]
    return [re.findall(r"<td>(.*?)</td>", tr, re.S) for tr in body.split("</tr>")[:-1]]


def test_markdown_has_a_line_per_recipe_and_a_table_per_reviewed_recipe() -> None:
    text = markdown_summary(RESULTS)
    assert text.startswith("## compressgate ci: exit 3 (integrity error)\n")
    overview = [line for line in text.splitlines() if line.startswith("- **")]
    assert overview == [
        "- **rejected**: mnist-small@3 (recipes/mnist.yaml): 4 gates, 1 failed, "
        "1 awaiting approval, 1 underpowered",
        "- **approved**: cifar-tiny@1 (recipes/cifar.yaml): 1 gate, cached",
        "- **integrity error**: recipes/tampered.yaml, exit 3: "
        "recipes/tampered.yaml: the signature by key 'ml-lead-1' does not verify",
    ]
    assert "reused from a cached run" in text
    assert "- accuracy: power 0.41 at n=450" in text
    found = tables(text)
    assert len(found) == 2
    header, *rows = found[0]
    assert header == ["gate", "owner", "state", "estimate", "interval", "threshold", "n", "note"]
    assert [r[:3] for r in rows] == [
        ["size", "ml-lead", "passed"],
        ["accuracy", "ml-lead", "**failed**"],
        ["fairness", "responsible-ai", "waived by responsible-ai"],
        ["latency", "serving", "awaiting-approval"],
    ]
    assert rows[1][3:7] == ["-0.0311", r"90% \[-0.0502, \]", "-0.02", "450"]
    assert rows[2][7].endswith(
        "waived: subgroup audit RAI-42 accepts the gap until retraining "
        "(until 2026-12-31T00:00:00+00:00)"
    )
    assert "|---|---|---|---|---|---|---|---|" in text


def test_markdown_escapes_hostile_text_in_cells_and_lists() -> None:
    text = markdown_summary([hostile_result(HOSTILE)])
    assert "<script>" not in text and "]]>" not in text
    [[_, row]] = tables(text)
    assert len(row) == 8  # the | in the note did not split the row
    [[*_, note]] = rendered_cells(text)
    assert note == (
        "seeds every: &lt;script&gt;alert('x')&lt;/script&gt; ]]&gt; &amp; &quot;quoted&quot; "
        "a|b<br>second line \\ *bold* [link](x)"
    )
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<script>" not in html and "<strong>bold" not in html and "<a href" not in html


def test_markdown_truncates_long_notes() -> None:
    long = "x" * 5000
    text = markdown_summary([hostile_result(long)])
    [[_, row]] = tables(text)
    assert len(row[-1]) < 400 and row[-1].endswith("…")


def test_markdown_stays_under_the_step_summary_cap() -> None:
    many = [
        hostile_result("y" * 5000).model_copy(update={"path": f"r{i}.yaml"}) for i in range(2500)
    ]
    text = markdown_summary(many)
    assert len(text.encode()) < 1024 * 1024
    assert "Summary truncated" in text
    assert text.count("- **rejected**") == 2500  # every overview line fits


def test_markdown_without_results_says_so() -> None:
    assert markdown_summary([]) == "## compressgate ci: exit 0 (ok)\n\n0 recipes checked.\n"


def test_junit_lists_a_gate_never_reached_as_skipped_with_the_reason(tmp_path: Path) -> None:
    stopped = status(
        [(ACCURACY, "failed", [])], run_status="stopped", stopped_after="int8"
    ).model_copy(update={"not_reached": ["fairness", "latency"]})
    result = CiResult(
        path="recipes/mnist.yaml", recipe="mnist-small@3", review=stopped, exit_code=1
    )
    [suite] = read_back(tmp_path, [result])
    found = cases(suite)
    assert list(found) == ["accuracy", "fairness", "latency"]
    assert (suite.tests, suite.failures, suite.skipped) == (3, 1, 2)
    [skipped] = found["latency"].result
    assert skipped.message == (
        "not judged: the pipeline stopped after stage 'int8' before this gate's stage"
    )
