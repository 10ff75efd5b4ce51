"""The pinned toolchain: the lock pins everything pyproject.toml asks for, exactly."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version and " " not in line, f"not an exact pin: {line!r}"
            pins[normalise(name)] = version
    return pins


def test_lock_pins_every_declared_dependency_exactly() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = lock_pins()
    for requirement in declared:
        name = normalise(re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0])
        assert name in pins, f"{requirement} is not pinned in requirements.lock"
    assert pins["torch"] == "2.13.0"


def test_examples_carry_the_same_lock() -> None:
    assert (ROOT / "recipes" / "examples" / "requirements.lock").read_bytes() == LOCK.read_bytes()


def test_every_package_folder_is_installed() -> None:
    """pyproject.toml lists the packages by hand (the top-level folders map onto the
    `compressgate.*` namespace): a folder with an __init__.py left out of the list is missing
    from the wheel, and every command importing it fails there (registry/workspace was)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {folder: package for package, folder in tool["package-dir"].items()}
    found = set()
    for folder, package in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert sorted(found) == sorted(tool["packages"])
