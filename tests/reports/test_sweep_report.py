"""The sweep report: the choice and why, every trial, the frontier, escaped, deterministic."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from compressgate.registry.kernel.errors import ManifestError
from compressgate.reports import plots
from compressgate.reports.sweep import (
    SweepObjective,
    SweepReportData,
    SweepTrialRow,
    render_sweep,
)

SVG_NS = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('x')</script> & \"q\" | piped"
ROOT = Path(__file__).resolve().parents[2]
SIZE, SPEED = "size.bytes", "latency.batch_64.speedup_p50"
OBJECTIVES = [
    SweepObjective(metric=SIZE, stage="int8", goal="minimize"),
    SweepObjective(metric=SPEED, stage="int8", goal="maximize"),
]
WHY = "the smallest size.bytes among the trials with a speedup of 3 or more"


def _trial(
    n: int,
    status: str,
    sparsity: Any,
    method: Any,
    values: tuple[float, float] | None,
    **extra: Any,
) -> SweepTrialRow:
    return SweepTrialRow.model_validate(
        {
            "trial": n,
            "run_id": f"run-2025-{n:04d}",
            "params": {"stages[prune].sparsity": sparsity, "stages[int8].method": method},
            "status": status,
            "objectives": {} if values is None else {SIZE: values[0], SPEED: values[1]},
            "seconds": 30.0 * n,
            "report_href": f"trials/run-2025-{n:04d}.html",
            **extra,
        }
    )


def _trials() -> list[SweepTrialRow]:
    """Six trials: three on the frontier (trial 2 chosen), one dominated, one failing a gate,
    one crashed whose method is hostile HTML."""
    return [
        _trial(0, "passed", 0.3, "static", (250_000, 2.6), on_frontier=True),
        _trial(1, "passed", 0.5, "dynamic", (350_000, 3.1)),
        _trial(2, "passed", 0.5, "static", (300_000, 3.2), on_frontier=True, chosen=True),
        _trial(3, "failed", 0.7, "static", (210_000, 3.9), failed_gates=["accuracy", "fairness"]),
        _trial(4, "crashed", 0.7, HOSTILE, None, error="CUDA out of memory\nin stage prune"),
        _trial(
            5,
            "passed",
            0.123456,
            {"per_channel": True, "keep": ["first"]},
            (520_000, 3.5),
            on_frontier=True,
            attempts=2,
        ),
    ]


def _data(**changes: Any) -> SweepReportData:
    fields: dict[str, Any] = {
        "sweep_id": "sweep-20250101T000000Z-0a1b2c",
        "name": "digits-sweep",
        "version": 3,
        "sha256": "ab" * 32,
        "recipe_name": "digits-cnn-compact",
        "recipe_version": 7,
        "recipe_sha256": "cd" * 32,
        "signers": ["ml-platform"],
        "strategy": "nsga2",
        "backend": "local",
        "workers": 2,
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:41:00Z",
        "status": "finished",
        "budget_trials": 8,
        "wall_time": 2460.0,
        "selection": {"fraction": 0.2, "seed": 0, "digests": {"0": "ef" * 32}},
        "axes": {
            "stages[prune].sparsity": [0.3, 0.5, 0.7],
            "stages[int8].method": ["static", "dynamic", HOSTILE],
        },
        "objectives": OBJECTIVES,
        "choose": f"smallest {SIZE} with {SPEED} >= 3",
        "trials": _trials(),
        "frontier": [0, 2, 5],
        "chosen": 2,
        "why": WHY,
        "baseline": {SIZE: 1_600_000.0, SPEED: 1.0},
        "generated_at": "2025-01-01T00:42:00Z",
    }
    return SweepReportData.model_validate(fields | changes)


def _html(data: SweepReportData | None = None) -> str:
    return render_sweep(data or _data(), "html").decode("utf-8")


def _rows(page: str) -> dict[int, tuple[str, str]]:
    """Trial number -> (the row's classes, its cells' HTML)."""
    found = re.findall(r'<tr id="trial-(\d+)"(?: class="([^"]*)")?>(.*?)</tr>', page, re.S)
    return {int(n): (classes, body) for n, classes, body in found}


def _svg(page: str) -> str:
    match = re.search(r'<figure id="frontier-plot">\s*(<svg.*?</svg>)', page, re.S)
    assert match, "no inline SVG in the frontier figure"
    return match.group(1)


def _texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG_NS}text")]


# --- the HTML report --------------------------------------------------------------------------


def test_the_chosen_trial_and_why_lead_the_report() -> None:
    page = _html()
    choice = re.search(r'<div class="choice" id="choice">(.*?)</div>', page, re.S)
    assert choice is not None
    text = choice.group(1)
    assert "<b>Chosen: trial 2</b>" in text
    assert "run-2025-0002" in text
    assert WHY in text
    assert "<code>stages[prune].sparsity</code> = <span" in text and ">0.5</span>" in text
    assert 'title="300,000 bytes">293 KiB</span>' in text
    assert "float baseline" in text and "1.53 MiB" in text
    assert f"smallest {SIZE} with {SPEED} &gt;= 3" in text
    assert page.index('id="choice"') < page.index("<h2>Sweep</h2>")  # before the details


def test_the_header_names_the_sweep_recipe_and_run_settings() -> None:
    page = _html()
    assert '<td class="mono" title="' + "ab" * 32 + '">' + "ab" * 6 + "</td>" in page
    assert "digits-cnn-compact v7" in page and 'title="' + "cd" * 32 + '"' in page
    for shown in ("ml-platform", "nsga2", "local, 2 worker(s)", "8 trials; 6 run", "41 min 00 s"):
        assert shown in page
    assert "4 passed" in page and "1 failed a gate" in page and "1 crashed" in page


def test_the_selection_split_note_says_the_test_split_was_not_searched() -> None:
    page = _html()
    note = re.search(r'<div class="honest" id="selection-note">(.*?)</div>', page, re.S)
    assert note is not None
    text = re.sub(r"<[^>]+>", "", note.group(1))
    assert "selection split" in text and "never on the test split" in text
    assert "fraction 0.2, seed 0; digests: 0 " + "ef" * 6 in text
    assert 'title="' + "ef" * 32 + '"' in note.group(1)
    assert "compressgate sweep propose sweep-20250101T000000Z-0a1b2c" in text
    assert "The search proposes, people decide." in text


def test_every_trial_has_a_row_with_its_values() -> None:
    rows = _rows(_html())
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]
    cells = {n: re.findall(r"<td[^>]*>(.*?)</td>", body, re.S) for n, (_, body) in rows.items()}
    assert cells[1][:2] == ["1", '<span class="passed">passed</span>']
    assert cells[1][2:6] == ["0.5", "dynamic", "342 KiB", "3.1"]
    assert cells[1][6:8] == ["30.0 s", "1"]
    assert cells[3][1] == '<span class="failed">failed</span>: accuracy, fairness'
    assert cells[5][2] == "0.1235"  # 4 significant digits, the exact value in the title
    assert '<td class="mono" title="0.123456">0.1235</td>' in rows[5][1]
    assert cells[5][3] == "{&#34;keep&#34;: [&#34;first&#34;], &#34;per_channel&#34;: true}"
    assert cells[5][7] == "2"  # attempts
    assert '<td class="n" title="520,000 bytes">508 KiB</td>' in rows[5][1]
    assert '<a href="trials/run-2025-0000.html">run-2025-0000</a>' in rows[0][1]


def test_the_frontier_and_the_chosen_marks_name_exactly_those_trials() -> None:
    rows = _rows(_html())
    frontier = {n for n, (classes, body) in rows.items() if "◆ frontier" in body}
    chosen = {n for n, (classes, body) in rows.items() if "★ chosen" in body}
    assert frontier == {n for n, (classes, _) in rows.items() if "frontier" in classes.split()}
    assert frontier == {0, 2, 5}
    assert chosen == {n for n, (classes, _) in rows.items() if "chosen" in classes.split()} == {2}


def test_a_crashed_trial_shows_its_error_and_no_values() -> None:
    _, body = _rows(_html())[4]
    assert '<span class="crashed">crashed</span>' in body
    assert '<summary class="err">CUDA out of memory</summary>' in body
    assert "<pre>CUDA out of memory\nin stage prune</pre>" in body
    assert body.count('<td class="n">–</td>') == 2  # both objectives


def test_hostile_params_and_links_are_inert() -> None:
    trials = _trials()
    trials[1] = trials[1].model_copy(update={"report_href": "javascript:alert(1)"})
    trials[3] = trials[3].model_copy(update={"report_href": "https://evil.example/x"})
    page = _html(_data(trials=trials))
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;q&#34; | piped" in page
    assert "javascript:" not in page
    assert "evil.example" not in page
    rows = _rows(page)
    assert "<a " not in rows[1][1] and '<span class="mono">run-2025-0001</span>' in rows[1][1]
    assert '<a href="trials/run-2025-0002.html">' in rows[2][1]


def test_the_html_report_is_self_contained() -> None:
    page = _html()
    assert page.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in page
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s\"'<>]*", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    assert re.search(r"<link\b|<img\b[^>]*src=\"(?!data:)|@import|<script", page) is None


def test_the_plot_is_inline_svg_with_the_frontier_and_the_choice() -> None:
    svg = _svg(_html())
    texts = _texts(svg)
    for entry in ("passes every gate", "fails a gate", "frontier", "chosen", "trial 2"):
        assert entry in texts, entry
    assert "4 pass every gate, 1 fail a gate; 1 crashed, not plotted" in texts
    assert "size.bytes at int8" in texts
    assert "minimize: lower is better · float baseline 1.53 MiB" in texts
    assert {"0", "1", "3", "5"} <= set(texts)  # every other plotted trial is numbered
    assert "4" not in texts  # the crashed trial is not drawn


def test_rendering_twice_gives_the_same_bytes() -> None:
    for fmt in ("html", "md", "json"):
        assert render_sweep(_data(), fmt) == render_sweep(_data(), fmt)  # type: ignore[arg-type]


def test_the_plot_is_identical_in_another_process() -> None:
    script = (
        "import sys; from tests.reports.test_sweep_report import _data, _svg, _html;"
        "sys.stdout.write(_svg(_html()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout == _svg(_html())


# --- Markdown and JSON ------------------------------------------------------------------------


def test_the_markdown_report_has_the_choice_the_note_and_a_table_of_trials() -> None:
    text = render_sweep(_data(), "md").decode("utf-8")
    assert f"**Chosen: trial 2** (run `run-2025-0002`): {WHY}" in text
    assert "never on the test split" in text
    assert "`compressgate sweep propose sweep-20250101T000000Z-0a1b2c`" in text
    assert "<svg" not in text and "frontier plot is in the HTML report" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| trial | status |"))
    rows = {int(line.split("|")[1]): line for line in lines if re.match(r"\| \d+ \| ", line)}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]

    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]

    assert all(len(cells(line)) == len(cells(header)) == 11 for line in rows.values())
    assert cells(rows[1])[2:6] == ["0.5", "dynamic", "342 KiB", "3.1"]
    assert {n for n, line in rows.items() if cells(line)[8] == "◆"} == {0, 2, 5}
    assert {n for n, line in rows.items() if cells(line)[9] == "★"} == {2}
    assert cells(rows[3])[1] == "failed: accuracy, fairness"
    assert cells(rows[4])[1] == "crashed: CUDA out of memory in stage prune"
    assert cells(rows[0])[10] == "[run-2025-0000](trials/run-2025-0000.html)"
    assert "<script" not in text and "&lt;script&gt;" in text


def test_the_json_report_is_the_data_itself() -> None:
    data = _data()
    out = render_sweep(data, "json")
    assert out == (data.model_dump_json(indent=2) + "\n").encode()
    assert SweepReportData.model_validate_json(out) == data
    assert json.loads(out)["trials"][4]["params"]["stages[int8].method"] == HOSTILE


def test_an_unknown_format_is_bad_input() -> None:
    with pytest.raises(ManifestError, match="one of html, md, json"):
        render_sweep(_data(), "pdf")  # type: ignore[arg-type]


# --- other shapes -----------------------------------------------------------------------------


def test_no_passing_trial_says_so_and_still_plots_the_failures() -> None:
    trials = [
        t.model_copy(
            update={
                "status": "failed",
                "failed_gates": ["latency"],
                "on_frontier": False,
                "chosen": False,
            }
        )
        if t.status == "passed"
        else t
        for t in _trials()
    ]
    data = _data(trials=trials, frontier=[], chosen=None, why="every trial failed a gate")
    page = _html(data)
    assert "<b>No trial passed every gate</b>: nothing is chosen. every trial failed a gate" in page
    assert "★ chosen" not in page and "◆ frontier" not in page
    texts = _texts(_svg(page))
    assert "fails a gate" in texts
    assert "passes every gate" not in texts and "chosen" not in texts
    assert "0 pass every gate, 5 fail a gate; 1 crashed, not plotted" in texts
    md = render_sweep(data, "md").decode()
    assert "**No trial passed every gate**: nothing is chosen." in md


def test_a_frontier_no_trial_of_which_meets_the_rule_says_so() -> None:
    trials = [t.model_copy(update={"chosen": False}) for t in _trials()]
    frontier = [t.trial for t in trials if t.on_frontier]
    why = "no frontier trial meets the rule: smallest size.bytes with speedup at least 5"
    data = _data(trials=trials, frontier=frontier, chosen=None, why=why)
    page = _html(data)
    assert f"<b>No frontier trial meets the choice rule</b>: nothing is chosen. {why}." in page
    assert "No trial passed every gate" not in page
    md = render_sweep(data, "md").decode()
    assert "**No frontier trial meets the choice rule**: nothing is chosen." in md


def test_one_objective_plots_each_trial_by_number() -> None:
    trials = [
        t.model_copy(
            update={
                "objectives": {k: v for k, v in t.objectives.items() if k == SIZE},
                "on_frontier": t.trial == 0,
                "chosen": t.trial == 0,
            }
        )
        for t in _trials()
    ]
    data = _data(objectives=OBJECTIVES[:1], trials=trials, frontier=[0], chosen=0, why="smallest")
    page = _html(data)
    texts = _texts(_svg(page))
    assert {"trial", "trial 0", "frontier", "chosen", "size.bytes at int8"} <= set(texts)
    assert "<b>Chosen: trial 0</b>" in page
    assert len(re.findall(r"<td", _rows(page)[1][1])) == 2 + 2 + 1 + 5  # one objective column
    md = render_sweep(data, "md").decode()
    assert "| 0 | passed | 0.3 | static | 244 KiB | 0.0 s | 1 | ◆ | ★ |" in md


def test_every_trial_crashed_draws_no_data_and_the_caption_counts_them() -> None:
    trials = [_trial(n, "crashed", 0.5, "static", None, error="killed") for n in range(3)]
    data = _data(trials=trials, frontier=[], chosen=None, why="")
    page = _html(data)
    assert _texts(_svg(page)) == ["no data"]
    assert "3 crashed, not plotted" in page
    assert "<b>No trial passed every gate</b>: nothing is chosen." in page


def test_contradictory_data_is_refused() -> None:
    with pytest.raises(ValidationError, match="on_frontier"):
        _data(frontier=[0, 2])
    with pytest.raises(ValidationError, match="flagged chosen"):
        _data(chosen=0)
    failed_chosen = [t.model_copy(update={"chosen": t.trial == 3}) for t in _trials()]
    with pytest.raises(ValidationError, match=r"trials \[3\].*did not pass"):
        _data(trials=failed_chosen, chosen=3)
    with pytest.raises(ValidationError, match="repeat"):
        _data(trials=[*_trials(), _trial(0, "failed", 0.1, "static", (1.0, 1.0))])
    with pytest.raises(ValidationError):
        _data(objectives=[])


# --- the plot alone ---------------------------------------------------------------------------


def _plot_input() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    keep = {"trial", "status", "objectives", "on_frontier", "chosen"}
    return [t.model_dump(include=keep) for t in _trials()], [o.model_dump() for o in OBJECTIVES]


def test_frontier_plot_draws_the_gate_groups_the_step_line_and_the_star() -> None:
    trials, objectives = _plot_input()
    svg = plots.frontier_plot(trials, objectives)
    assert svg == plots.frontier_plot(trials, objectives)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg" and "<?xml" not in svg
    texts = _texts(svg)
    for entry in ("passes every gate", "fails a gate", "frontier", "chosen", "trial 2"):
        assert entry in texts
    assert "float baseline" not in texts  # none given
    styles = " ".join(e.get("style", "") for e in root.iter())
    assert "stroke: #2a9d58" in styles and "stroke-dasharray" in styles  # the step line
    assert "fill: #e3a008" in styles  # the star
    assert "stroke: #c0392b" in styles  # the crosses


def test_frontier_plot_with_more_than_two_objectives_rings_the_front_without_a_staircase() -> None:
    trials, objectives = _plot_input()
    third = {"metric": "accuracy", "stage": "int8", "goal": "maximize"}
    for t in trials:
        if t["objectives"]:
            t["objectives"]["accuracy"] = 0.9
    texts = _texts(plots.frontier_plot(trials, [*objectives, third]))
    assert "frontier (all 3 objectives)" in texts
    assert any(t.endswith("first 2 of 3 objectives") for t in texts)


def test_human_bytes() -> None:
    assert [plots.human_bytes(n) for n in (0, 1023, 1024, 300_000, 1_600_000, 5 * 2**30)] == [
        "0 B",
        "1023 B",
        "1.00 KiB",
        "293 KiB",
        "1.53 MiB",
        "5.00 GiB",
    ]


def test_the_html_report_opens_in_headless_chromium_without_errors_or_requests(
    tmp_path: Path,
) -> None:
    from tests.helpers.browser import find_chromium, open_page

    if find_chromium() is None:
        pytest.skip("no chromium on PATH: the browser check needs Debian's chromium")
    page = tmp_path / "sweep.html"
    page.write_bytes(render_sweep(_data(), "html"))
    opened = open_page(page, tmp_path / "sweep.png")
    assert opened.console == []
    assert opened.requests == []


def test_frontier_plot_draws_a_baseline_only_near_the_trials_and_names_it_on_the_axis() -> None:
    trials, objectives = _plot_input()
    near = _texts(plots.frontier_plot(trials, objectives, baseline={SPEED: 3.0}))
    assert "float baseline" in near  # the legend entry of the dotted line
    assert "maximize: higher is better · float baseline 3" in near
    far = _texts(plots.frontier_plot(trials, objectives, baseline={SIZE: 1e9}))
    assert "float baseline" not in far
    assert "minimize: lower is better · float baseline 954 MiB" in far
