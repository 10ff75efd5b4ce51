"""Inline SVG plots: deterministic bytes, valid XML, self-contained, escaped, sane on no data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from compressgate.evaluators.calibration import reliability_diagram
from compressgate.evaluators.results import Estimate, LatencyBatch, ReliabilityBin
from compressgate.reports import plots
from compressgate.reports.plots import ChangeRow, ParetoPoint, pareto_front

SVG_NS = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert(1)</script> & "q"'
ROOT = Path(__file__).resolve().parents[2]


# --- realistic inputs -------------------------------------------------------------------------


def _points(label0: str = "r01/int8") -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(14):
        x = float(rng.uniform(2e5, 8e6))
        y = float(rng.uniform(0.80, 0.95))
        out.append(
            {
                "label": label0 if i == 0 else f"r{i // 3:02d}/stage-{i}",
                "x": x,
                "y": y,
                "y_low": y - 0.011,
                "y_high": y + 0.009,
                "group": "this run" if i < 3 else "earlier runs",
            }
        )
    return out


def _bins(shift: float, seed: int) -> list[ReliabilityBin]:
    """Bins from the calibration evaluator itself, on synthetic softmax outputs."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2000, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    top = probs.argmax(axis=1)
    right = rng.random(2000) < probs.max(axis=1) - shift
    labels = np.where(right, top, (top + 1) % 10)
    return reliability_diagram(probs, labels, 15)


def _rows(name0: str = "class 0") -> list[tuple[str, float, float, float]]:
    rng = np.random.default_rng(3)
    rows = []
    for k in range(10):
        d = float(rng.uniform(-0.05, 0.03))
        rows.append((name0 if k == 0 else f"class {k}", d, d - 0.021, d + 0.018))
    return rows


def _quantiles(p50: float) -> dict[str, Estimate]:
    return {
        name: Estimate(
            estimate=p50 * f, ci_low=p50 * f * 0.95, ci_high=p50 * f * 1.08, n=300, method="order"
        )
        for name, f in (("p99", 2.2), ("p50", 1.0), ("p90", 1.3), ("p95", 1.5))
    }


def _batches() -> list[LatencyBatch]:
    return [
        LatencyBatch(
            batch_size=size,
            quantiles_ms=_quantiles(0.31 * size),
            baseline_quantiles_ms=_quantiles(0.52 * size),
            speedup_p50=Estimate(estimate=1.7, ci_low=1.6, ci_high=1.8, n=300, method="boot"),
            throughput=Estimate.exact(size / 0.31e-3),
        )
        for size in (1, 8, 32)
    ]


RENDERERS: dict[str, Callable[[], str]] = {
    "pareto": lambda: plots.pareto(
        _points(), x_label="size (bytes)", y_label="accuracy", x_log=True
    ),
    "reliability": lambda: plots.reliability(_bins(0.05, 1), _bins(0.01, 2)),
    "changes": lambda: plots.changes(
        _rows(), title="recall drop per class", x_label="drop", threshold=0.02
    ),
    "latency": lambda: plots.latency(_batches()),
}


def _texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG_NS}text")]


# --- pareto_front -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xy", "front"),
    [
        ([], []),
        ([(1.0, 0.5)], [0]),
        ([(1.0, 0.9), (2.0, 0.8)], [0]),  # smaller and better: the other is dominated
        ([(1.0, 0.8), (2.0, 0.9), (3.0, 0.85)], [0, 1]),
        ([(3.0, 0.95), (1.0, 0.8), (2.0, 0.9)], [1, 2, 0]),  # listed by increasing x
        ([(1.0, 0.9), (1.0, 0.9)], [0, 1]),  # exact duplicates: neither dominates
        ([(1.0, 0.8), (1.0, 0.9)], [1]),  # same x: the higher y wins
        ([(2.0, 0.9), (1.0, 0.9)], [1]),  # same y: the smaller x wins
        ([(1.0, 0.9), (1.0, 0.9), (0.5, 0.9)], [2]),  # duplicates dominated together
        ([(2.0, 0.7), (1.0, 0.7), (1.0, 0.8), (3.0, 0.8)], [2]),
    ],
)
def test_pareto_front_hand_cases(xy: list[tuple[float, float]], front: list[int]) -> None:
    assert pareto_front(xy) == front


def test_pareto_front_reads_points_and_dicts_alike() -> None:
    dicts = [{"label": str(i), "x": x, "y": y} for i, (x, y) in enumerate([(2, 0.9), (1, 0.8)])]
    models = [ParetoPoint.model_validate(d) for d in dicts]
    assert pareto_front(dicts) == pareto_front(models) == [1, 0]


@given(
    st.lists(
        st.tuples(st.integers(0, 6).map(float), st.integers(0, 6).map(float)),
        max_size=12,
    )
)
def test_pareto_front_is_exactly_the_undominated_points(xy: list[tuple[float, float]]) -> None:
    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[0] and a[1] >= b[1] and a != b

    front = pareto_front(xy)
    assert front == sorted(front, key=lambda i: (xy[i][0], -xy[i][1], i))
    for i, p in enumerate(xy):
        assert (i in front) == (not any(dominates(q, p) for q in xy))


# --- every plot -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(RENDERERS))
def test_plot_is_deterministic_valid_small_and_self_contained(kind: str) -> None:
    svg = RENDERERS[kind]()
    assert RENDERERS[kind]() == svg
    assert svg.startswith("<svg ")
    assert "<?xml" not in svg
    assert "DOCTYPE" not in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    assert not root.findall(f"{SVG_NS}metadata")
    rest = svg.replace("http://www.w3.org/2000/svg", "").replace("http://www.w3.org/1999/xlink", "")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", rest, re.IGNORECASE)
    assert "<image" not in svg
    assert len(svg.encode()) < 60_000


def test_ids_are_unique_within_and_different_between_plots() -> None:
    first = RENDERERS["changes"]()
    other = plots.changes(_rows()[:5], title="recall drop per class", x_label="drop")
    ids = [set(re.findall(r' id="([^"]+)"', svg)) for svg in (first, other, RENDERERS["pareto"]())]
    for svg in (first, other):
        found = re.findall(r' id="([^"]+)"', svg)
        assert len(found) == len(set(found))
        assert "figure_1" not in found  # matplotlib's group names would clash between plots
    assert not ids[0] & ids[1]
    assert not ids[0] & ids[2]


def test_pareto_is_identical_in_another_process() -> None:
    script = (
        "import json, sys; from compressgate.reports.plots import pareto;"
        "sys.stdout.write(pareto(json.loads(sys.argv[1]), x_label='size (bytes)',"
        " y_label='accuracy', x_log=True))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(_points())],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout == RENDERERS["pareto"]()


def test_importing_plots_does_not_import_matplotlib_and_rendering_avoids_pyplot() -> None:
    script = (
        "import sys; import compressgate.reports.plots as p;"
        "assert 'matplotlib' not in sys.modules, 'imported at module level';"
        "p.changes([('a', 0.0, -1.0, 1.0)], title='t', x_label='x');"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)


def test_rendering_leaves_global_rcparams_alone() -> None:
    import matplotlib

    before = dict(matplotlib.rcParams)
    RENDERERS["reliability"]()
    assert dict(matplotlib.rcParams) == before


# --- hostile and odd text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "render",
    [
        lambda s: plots.pareto(_points(s), x_label=s, y_label=s),
        lambda s: plots.changes(_rows(s), title=s, x_label=s, threshold=0.0, threshold_label=s),
    ],
    ids=["pareto", "changes"],
)
def test_hostile_text_is_escaped_never_markup(render: Callable[[str], str]) -> None:
    svg = render(HOSTILE)
    assert "<script" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in svg
    root = ET.fromstring(svg)
    assert not [e for e in root.iter() if e.tag.rsplit("}", 1)[-1].lower() == "script"]
    assert HOSTILE in _texts(svg)  # the label itself, as text, after XML unescaping


def test_dollar_signs_are_text_not_mathtext() -> None:
    svg = plots.changes([("$x$ costs $5", 0.0, -1.0, 1.0)], title="a_b^c", x_label="$")
    texts = _texts(svg)
    assert "$x$ costs $5" in texts
    assert "a_b^c" in texts


def test_long_labels_are_shortened() -> None:
    svg = plots.changes([("n" * 200, 0.0, -1.0, 1.0)], title="t", x_label="x")
    assert "n" * 47 + "…" in _texts(svg)


# --- inputs -----------------------------------------------------------------------------------


def test_reliability_accepts_recorded_dicts_and_a_missing_baseline() -> None:
    final = [b.model_dump(mode="json") for b in _bins(0.02, 4)]
    assert plots.reliability(None, final) == plots.reliability(None, _bins(0.02, 4))
    assert "final (n=2000)" in _texts(plots.reliability(None, final))


def test_latency_accepts_recorded_dicts_without_baseline_and_orders_quantiles() -> None:
    recorded = [b.model_dump(mode="json") | {"baseline_quantiles_ms": None} for b in _batches()]
    svg = plots.latency(recorded[:1], unit="us")
    texts = _texts(svg)
    assert "latency (us)" in texts
    ticks = [t for t in texts if re.fullmatch(r"p\d+", t)]
    assert ticks == ["p50", "p90", "p95", "p99"]
    assert "baseline" not in texts


def test_changes_accepts_rows_dicts_and_tuples_alike() -> None:
    rows = _rows()
    as_models = [ChangeRow(name=n, estimate=e, ci_low=lo, ci_high=hi) for n, e, lo, hi in rows]
    as_dicts = [r.model_dump() for r in as_models]
    svgs = {plots.changes(r, title="t", x_label="x") for r in (rows, as_models, as_dicts)}
    assert len(svgs) == 1


def test_invalid_points_and_rows_are_refused() -> None:
    with pytest.raises(ValidationError, match="exceeds"):
        ParetoPoint(label="a", x=1, y=0.5, y_low=0.7, y_high=0.6)
    with pytest.raises(ValidationError, match="both"):
        ParetoPoint(label="a", x=1, y=0.5, y_low=0.4)
    with pytest.raises(ValidationError):
        ParetoPoint(label="a", x=float("nan"), y=0.5)
    with pytest.raises(ValidationError, match="exceeds"):
        ChangeRow(name="a", estimate=1.0, ci_low=0.5, ci_high=-1.0)
    with pytest.raises(ValueError, match="x > 0"):
        plots.pareto([{"label": "a", "x": 0.0, "y": 0.5}], x_label="x", y_label="y", x_log=True)


def test_an_interval_that_misses_its_estimate_is_drawn_as_recorded() -> None:
    # A percentile bootstrap interval can lie wholly on one side of the point estimate.
    svg = plots.changes([("skewed", 0.05, 0.06, 0.09)], title="t", x_label="x")
    assert "skewed" in _texts(svg)
    point = {"label": "p", "x": 1.0, "y": 0.5, "y_low": 0.6, "y_high": 0.7}
    assert "p" in _texts(plots.pareto([point], x_label="x", y_label="y"))


@pytest.mark.parametrize(
    "svg",
    [
        plots.pareto([], x_label="x", y_label="y"),
        plots.reliability(None, None),
        plots.reliability([], []),
        plots.reliability(
            None, [ReliabilityBin(lower=0, upper=1, count=0, confidence=None, accuracy=None)]
        ),
        plots.changes([], title="t", x_label="x"),
        plots.latency([]),
        plots.latency([{"batch_size": 1, "quantiles_ms": {}, "throughput": Estimate.exact(0)}]),
    ],
)
def test_empty_input_draws_no_data(svg: str) -> None:
    assert ET.fromstring(svg).tag == f"{SVG_NS}svg"
    assert _texts(svg) == ["no data"]
