"""Two MiniLM runs side by side, from their evidence bundles (`compressgate report RUN --format
json`): the last stage of each, with the figures issue 26 asks to quote.

    .venv/bin/python bench/minilm_side_by_side.py A.json B.json [--json]

`make demo-minilm-compact` calls it with the quantize-only demo's bundle and its own. Every
figure is read from the bundles (estimate and interval, as the reports show them); nothing is
measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# (label, metric, format): what a reader compares.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("size (MB)", "size.bytes", "mb"),
    ("times smaller than float32", "size.times_smaller", "x"),
    ("cosine to float, mean", "cosine.mean", "f4"),
    ("cosine to float, 1st percentile", "cosine.p1", "f4"),
    ("top-1 neighbour agreement", "retrieval.top1_agreement", "pct"),
    ("speed-up at batch 1", "latency.batch_1.speedup_p50", "x"),
    ("speed-up at batch 32", "latency.batch_32.speedup_p50", "x"),
    ("p50 at batch 1 (ms)", "latency.batch_1.p50_ms", "f2"),
)


def _format(value: float, kind: str) -> str:
    if kind == "mb":
        return f"{value / 1e6:.1f}"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "x":
        return f"{value:.2f}×"
    return f"{value:.{int(kind[1])}f}"


def cell(metric: dict[str, Any] | None, kind: str) -> str:
    if metric is None:
        return "–"
    estimate = _format(float(metric["estimate"]), kind)
    low, high = metric.get("ci_low"), metric.get("ci_high")
    if low is None or high is None or low == high:
        return estimate
    return f"{estimate} [{_format(float(low), kind)}, {_format(float(high), kind)}]"


def last_stage(bundle: dict[str, Any], source: Path) -> dict[str, Any]:
    stages = [s for s in bundle["run"]["stages"] if s.get("status") == "done"]
    if not stages:
        raise SystemExit(f"{source}: the run has no finished stage")
    return dict(stages[-1])


def table(paths: list[Path]) -> tuple[str, list[dict[str, Any]]]:
    columns = []
    for path in paths:
        try:
            bundle = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{path}: not a readable evidence bundle ({exc})") from exc
        stage = last_stage(bundle, path)
        columns.append(
            {
                "recipe": bundle["recipe"]["name"],
                "run_id": bundle["run"]["run_id"],
                "review": bundle["review"]["status"],
                "stage": stage["name"],
                "metrics": {metric: stage["metrics"].get(metric) for _, metric, _ in ROWS},
            }
        )
    header = "| | " + " | ".join(f"{c['recipe']} ({c['stage']}, {c['review']})" for c in columns)
    lines = [header + " |", "|---" * (len(columns) + 1) + "|"]
    for label, metric, kind in ROWS:
        cells = [cell(c["metrics"][metric], kind) for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines), columns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="print the columns as JSON")
    args = parser.parse_args(argv)
    text, columns = table(args.bundles)
    print(json.dumps(columns, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
