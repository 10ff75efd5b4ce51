"""compressgate as a user installs it: the sdist and wheel built from this checkout, the wheel
(not an editable install) in a fresh virtual environment beside nothing of the repository, then
`--help`, a signed recipe submitted end to end and its report (issue 24)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers.recipes import DEFAULTS, QUICK

ROOT = Path(__file__).resolve().parent.parent
UV = ROOT / ".uv" / "bin" / "uv"
WHEELS = Path("/opt/wheels")


def _run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel `uv build` makes of this checkout (as `python -m build` would)."""
    if not UV.exists():
        pytest.fail(f"{UV} is missing: `make venv` installs it")
    out = tmp_path_factory.mktemp("dist")
    links = ["--find-links", str(WHEELS)] if WHEELS.is_dir() else []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    _run([UV, "build", "--quiet", "--out-dir", out, *links, ROOT], ROOT, env)
    return out


@pytest.mark.slow
def test_the_sdist_and_wheel_hold_the_license_the_templates_and_the_schema(dist: Path) -> None:
    (wheel,) = dist.glob("compressgate-*.whl")
    (sdist,) = dist.glob("compressgate-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "compressgate/reports/templates/report.html",
        "compressgate/reports/templates/report.md",
        "compressgate/reports/templates/card.md",
        "compressgate/recipes/schema/recipe-v1.schema.json",
        "compressgate/recipes/examples/digits.yaml",
        "compressgate/recipes/examples/requirements.lock",
    ):
        assert needed in names, f"{needed} is not in {wheel.name}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    # a range, so that compressgate installs beside another project's torch
    assert "Requires-Dist: torch<3,>=2.13" in text
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("/LICENSE") for m in members)
    assert any(m.endswith("/reports/templates/report.html") for m in members)


@pytest.mark.slow
def test_the_wheel_alone_runs_a_signed_recipe_and_renders_its_report(
    dist: Path, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("compressgate-*.whl")
    venv = tmp_path / "venv"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "COMPRESSGATE_"))
    }
    links = ["--find-links", str(WHEELS)] if WHEELS.is_dir() else []
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv], tmp_path, env)
    python = venv / "bin" / "python"
    lock = ROOT / "requirements.lock"
    _run([UV, "pip", "install", "--quiet", "--python", python, *links, "-r", lock], tmp_path, env)
    _run([UV, "pip", "install", "--quiet", "--python", python, "--no-deps", wheel], tmp_path, env)
    home = tmp_path / "home"  # nothing of the repository here: the wheel alone is imported
    home.mkdir()
    found = _run([python, "-c", "import compressgate.reports as r; print(r.__file__)"], home, env)
    assert str(venv) in found and str(ROOT) not in found
    cg = venv / "bin" / "compressgate"
    assert "Usage: compressgate" in _run([cg, "--help"], home, env)
    _run([cg, "keys", "generate", "--owner", "ml-platform", "--out", "keys"], home, env)
    key = "keys/ml-platform.pub.json"
    trust = ["--trust", "trust.yaml"]
    _run(
        [cg, "trust", "add", *trust, "--owner", "ml-platform", "--key", key, "--role", "author"],
        home,
        env,
    )
    text = QUICK
    for name, value in DEFAULTS.items():
        text = text.replace(name, value)
    (home / "recipe.yaml").write_text(text)
    (home / "requirements.lock").write_bytes(lock.read_bytes())
    _run([cg, "recipe", "sign", "recipe.yaml", "--key", "keys/ml-platform.key"], home, env)
    _run([cg, "submit", "recipe.yaml", *trust, "--workspace", "ws"], home, env)
    listed = _run(
        [cg, "review", "status", "--workspace", "ws", "--limit", "1", "--json"], home, env
    )
    run_id = json.loads(listed)[0]["run_id"]
    _run([cg, "report", run_id, "--workspace", "ws", "-o", "report.html"], home, env)
    report = (home / "report.html").read_text()
    assert "digits-quick" in report and run_id in report
