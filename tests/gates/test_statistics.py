"""Every simulation family of `bench/statistics.py`: each row met.

The families (`tests/helpers/statsim/`) run the real evaluators, `judge`, `decide` and the power
checks on data drawn from known distributions; seeded, so a row's figure is the same every run.
Here at a tenth of the simulated datasets (`--statsim-scale`); `bench/statistics.py` runs this
test at full size, its rows are quoted in docs/statistics.md.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import pytest

from tests.helpers.statsim.common import Options

FOLDER = Path(__file__).resolve().parents[1] / "helpers" / "statsim"
FAMILIES = ("accuracy", "seeds", "fairness", "calibration", "latency")
PRESENT = [f for f in FAMILIES if (FOLDER / f"{f}.py").exists()]


@pytest.mark.slow
@pytest.mark.parametrize("family", PRESENT)
def test_every_simulated_row_is_met(
    family: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = request.config
    module = importlib.import_module(f"tests.helpers.statsim.{family}")
    options = Options(
        scale=config.getoption("statsim_scale"),
        seed=config.getoption("statsim_seed"),
        folder=tmp_path,
    )
    start = time.perf_counter()
    rows = module.rows(options)
    seconds = time.perf_counter() - start
    out: Path | None = config.getoption("statsim_figures")
    if out is not None:
        line = {"family": family, "seconds": round(seconds, 1), "rows": [r.as_dict() for r in rows]}
        with out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
    assert rows, f"{family}: no row measured"
    missed = [
        f"{r.case}: {r.quantity} declared {r.declared:.4f}, measured {r.measured:.4f} "
        f"± {r.se:.4f} over {r.reps}"
        for r in rows
        if not r.met
    ]
    assert missed == []
