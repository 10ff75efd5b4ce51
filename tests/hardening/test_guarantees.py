"""Every hardening guarantee at a bench's counts (issue 8): each section's scenarios
(`tests/helpers/harden/`) measured as figures, one a guarantee, met only if every case held.

`bench/hardening.py` runs this module through pytest, in a subprocess, and prints the figures:
at full counts, or at a tenth with `--quick`, which is how CI checks them. So that the same
guarantees are not checked twice, `make test-slow` leaves these tests (marked `bench`) to the
bench; the other tests of this folder check single scenarios at a small scale in `make test`.

Options (tests/conftest.py): `--harden-scale` (default 0.1, the bench's `--quick`; 1.0 is its
full counts), `--harden-seed`, and `--harden-figures FILE`, to which each section appends its
figures as one JSON line. PostgreSQL cases run where $COMPRESSGATE_TEST_PG_URL names a server.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.helpers.harden.common import Options
from tests.helpers.postgres import PG_ENV

SECTIONS = ("bad_input", "tampering", "crash", "concurrency", "unsafe", "insider", "inputs")

pytestmark = [pytest.mark.slow, pytest.mark.bench]


@pytest.mark.parametrize("section", SECTIONS)
def test_every_guarantee_of_the_section_holds(
    section: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    config = request.config
    module = importlib.import_module(f"tests.helpers.harden.{section}")
    options = Options(
        scale=config.getoption("harden_scale"),
        seed=config.getoption("harden_seed"),
        postgres=os.environ.get(PG_ENV) or None,
        folder=tmp_path,
    )
    start = time.perf_counter()
    found = module.figures(options)
    seconds = time.perf_counter() - start
    figures = [{**asdict(f), "met": f.met} for f in found]
    out: Path | None = config.getoption("harden_figures")
    if out is not None:
        line = {"section": section, "seconds": round(seconds, 1), "figures": figures}
        with out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
    assert found, f"{section}: no guarantee measured"
    missed = [f"{f.name}: {f.held}/{f.tried}: {f.detail}" for f in found if not f.met]
    assert missed == []
