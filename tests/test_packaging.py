"""The pinned toolchain: the lock pins everything pyproject.toml asks for, exactly."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from compressgate.registry.run.environment import Pin, read_lock

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


def lock_pins() -> dict[str, Pin]:
    return {canonicalize_name(pin.name): pin for pin in read_lock(LOCK)}


def test_lock_pins_every_declared_dependency_exactly_and_hashed() -> None:
    """Every requirement of pyproject.toml (runtime and extras) is pinned to a version its range
    admits, with the sha256 of each file that may be installed (`make venv` requires them)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pins = lock_pins()
    for text in declared:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{text} is not pinned in requirements.lock"
        assert requirement.specifier.contains(pin.version, prereleases=True), (text, pin.version)
    unhashed = [pin.name for pin in pins.values() if not pin.hashes]
    assert not unhashed, f"pins without --hash: {unhashed}"
    assert all(h.startswith("sha256:") and len(h) == 71 for p in pins.values() for h in p.hashes)
    # The CPU build (the local wheel), not PyPI's CUDA build and its nvidia-* packages.
    assert pins["torch"].version == "2.13.0+cpu"
    assert not [name for name in pins if name.startswith("nvidia-")]


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
